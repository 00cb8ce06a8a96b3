"""`build_report`: the per-image report for any model (what the demo report shows for the built-in
one): predictions with class names, Grad-CAM of the top classes, guided Grad-CAM, the attribution
methods compared with their faithfulness, the layer table, activations, first-layer filters, and,
given an atlas of the same model, each image's strongest atlas channels linked to their pages.

Sections a model cannot have are left out with a note (no (N, classes) output: no class-based
attribution; no Conv: no filters). The site is written by the one HTML layer (`render.html`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data.classes import class_names_for
from ..errors import ConfigurationError
from ..methods.activations import default_layers, layer_stats, select_channels, to_nchw
from ..methods.cam import GradCAM
from ..methods.explanation import softmax
from ..methods.gradients import GuidedBackprop, GuidedGradCAM
from ..methods.metrics import deletion, insertion
from ..methods.registry import METHODS, make
from ..model import Model
from ..render import channel_grid, comparison_grid, filter_grid, overlay
from ..render.html import Markup, Page, Site, code, figure, fmt, link, table, url
from ..render.io import safe_filename, unique_stems
from .config import classifier_classes, layer_file

log = logging.getLogger("onnxlens")

#: Per-call knobs that keep the method comparison cheap (Score-CAM's C forward passes per image
#: dominate otherwise); captum's names.
METHOD_SETTINGS: dict[str, dict[str, Any]] = {
    "smoothgrad": {"nt_samples": 16},
    "ig": {"n_steps": 32},
    "occlusion": {"sliding_window_shapes": 32, "strides": 16},
}
DEFAULT_METHODS = ("gradcam", "gradcam++", "layercam", "eigencam", "saliency", "ig", "guided")


@dataclass
class ReportContext:
    """What every section of a report sees."""

    model: Model
    out: Path
    names: list[str]  # one file stem per image
    photos: list[np.ndarray]  # fitted uint8 RGB at the model's input size
    x: np.ndarray
    classes: list[str] | None  # class names, when the model or a labels file gives them
    logits: np.ndarray | None  # (N, K) for a classifier, else None
    channels: int = 32
    top: int = 3
    methods: Sequence[str] = DEFAULT_METHODS
    atlas: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)
    site: Site = field(init=False)

    def __post_init__(self) -> None:
        self.site = Site(self.out)

    def cname(self, k: int) -> str:
        return self.classes[k] if self.classes and k < len(self.classes) else f"class {k}"


def read_labels(path: str | os.PathLike) -> list[str]:
    """Class names, one a line (index i on line i)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigurationError(
            f"--labels {str(p)!r} is not a file; pass a text file with one class name a line."
        )
    return [line.strip() for line in p.read_text(encoding="utf-8").splitlines()]


def page_predictions(ctx: ReportContext, page: Page) -> None:
    sec = page.section("Predictions", "predictions")
    probs = softmax(ctx.logits) if ctx.logits is not None else None
    for i, name in enumerate(ctx.names):
        src = ctx.site.image(f"images/{name}.png", ctx.photos[i])
        if probs is None:
            sec.row(figure(src, name, 224))
            continue
        top = np.argsort(-probs[i], kind="stable")[:5]
        rows = [
            [k + 1, ctx.cname(int(c)), int(c),
             fmt("<span class='bar' style='width:{:d}px'></span>{:.1%}", int(200 * probs[i, c]), probs[i, c])]
            for k, c in enumerate(top)
        ]  # fmt: skip
        sec.row(
            figure(src, name, 224),
            fmt("<figure>{}</figure>", table(["#", "class", "id", "probability"], rows, {2})),
        )
    if probs is None:
        sec.text("The model's first output is not (N, classes): no class predictions.", note=True)


def page_top_gradcam(ctx: ReportContext, page: Page) -> None:
    """Grad-CAM for each image's `top` most probable classes."""
    if ctx.logits is None:
        return
    sec = page.section(f"Grad-CAM: the top-{ctx.top} classes", "gradcam")
    probs = softmax(ctx.logits)
    top = np.argsort(-probs, axis=1, kind="stable")[:, : ctx.top]
    xs = np.repeat(ctx.x, ctx.top, axis=0)
    exp = GradCAM(ctx.model, progress=False).attribute(xs, target=top.reshape(-1))
    ov = exp.overlay(np.repeat(np.asarray(ctx.photos), ctx.top, axis=0))
    sec.text("Layer {}. {}", ", ".join(exp.layers), code("onnxlens explain MODEL IMAGE --method gradcam --target K --out DIR"), note=True)  # fmt: skip
    for i, name in enumerate(ctx.names):
        parts = [figure(f"images/{name}.png", name, 200)]
        for k in range(ctx.top):
            c = int(top[i, k])
            src = ctx.site.image(f"explain/top/{name}_{k}.png", ov[i * ctx.top + k])
            parts.append(figure(src, f"{ctx.cname(c)} ({probs[i, c]:.1%})", 200))
        sec.row(*parts)


def deprocess(g: np.ndarray, layout: str = "NCHW") -> np.ndarray:
    """An input-shaped gradient (C, H, W) as a uint8 picture: standardised, 0.1 std around
    mid-grey (the classic guided-backprop rendering)."""
    img = g.transpose(1, 2, 0) if layout != "NHWC" else g
    img = (img - img.mean()) / (img.std() + 1e-5) * 0.1 + 0.5
    u8 = (np.clip(img, 0, 1) * 255).astype(np.uint8)
    return np.repeat(u8, 3, axis=2) if u8.shape[2] == 1 else u8


def page_guided_gradcam(ctx: ReportContext, page: Page) -> None:
    if ctx.logits is None:
        return
    sec = page.section("Guided Grad-CAM", "guided")
    ggc = GuidedGradCAM(ctx.model, progress=False).attribute(ctx.x)
    gb = GuidedBackprop(ctx.model, progress=False).attribute(ctx.x, target=ggc.target)
    cam_ov = overlay(np.asarray(ctx.photos), ggc.extras["gradcam"])
    sec.text(
        "Grad-CAM (where), guided backpropagation (which pixels) and guided Grad-CAM (their "
        "product), for each image's top class.", note=True,
    )  # fmt: skip
    for i, name in enumerate(ctx.names):
        c = int(ggc.target[i])
        pics = [("gradcam", cam_ov[i]), ("guided", deprocess(gb.raw[i], ctx.model.layout)),
                ("guided Grad-CAM", deprocess(ggc.raw[i], ctx.model.layout))]  # fmt: skip
        parts = []
        for label, rgb in pics:
            src = ctx.site.image(f"explain/guided/{name}_{label.replace(' ', '_')}.png", rgb)
            parts.append(figure(src, f"{label}: {ctx.cname(c)}", 200))
        sec.row(*parts)


def page_method_comparison(ctx: ReportContext, page: Page) -> None:
    """Every chosen method on every image (top class), with deletion/insertion AUC and time."""
    if ctx.logits is None or not ctx.methods:
        return
    sec = page.section("Attribution methods compared", "methods")
    cols, rows = [], []
    for name in ctx.methods:
        t = time.perf_counter()
        exp = make(name, ctx.model, progress=False).attribute(
            ctx.x, **METHOD_SETTINGS.get(name, {})
        )
        dt = time.perf_counter() - t
        cols.append(exp.overlay(np.asarray(ctx.photos)))
        d = deletion(ctx.model, exp, steps=16, progress=False).mean_auc
        ins = insertion(ctx.model, exp, steps=16, progress=False).mean_auc
        rows.append([name, f"{dt:.2f} s", f"{d:.3f}", f"{ins:.3f}"])
        # Each method compiles its own VJP graph and session (Lite0 at 224, 4 images: up to
        # 0.45 GB with its arena); kept for all seven, the section peaked at 1.7 GB, freed one
        # by one at 1.3 GB. Rebuilding the one the CAMs share costs about 0.3 s a method.
        del exp
        ctx.model.clear_sessions()
    src = ctx.site.image("explain/comparison.png", comparison_grid(np.asarray(ctx.photos), cols))
    sec.text("Rows: images; columns: the input, then {}. {}", ", ".join(ctx.methods), code("onnxlens explain MODEL IMAGE... --method all --out DIR"), note=True)  # fmt: skip
    sec.add(figure(src, "", min(1400, 160 * (len(ctx.methods) + 1))))
    sec.heading("Faithfulness (mean over the images)")
    sec.text(
        "Deletion AUC: the class probability as the most important pixels are removed first "
        "(lower is better). Insertion AUC: as they are inserted into a blurred copy (higher is "
        "better).", note=True,
    )  # fmt: skip
    sec.add(table(["method", "time", "deletion AUC", "insertion AUC"], rows, {1, 2, 3}))


def page_summary(ctx: ReportContext, page: Page) -> None:
    sec = page.section("Layers", "layers")
    text = ctx.model.summary()
    (ctx.out / "summary.txt").write_text(text)
    (ctx.out / "summary.json").write_text(json.dumps(ctx.model.to_dict(), indent=1))
    sec.text(
        "{n} layers, {p} parameters. Also as {txt} and {js} ({cmd}).",
        n=len(ctx.model.layers), p=f"{ctx.model.param_count:,}", txt=link("summary.txt", "text"),
        js=link("summary.json", "JSON"), cmd=code("onnxlens inspect MODEL [--json]"), note=True,
    )  # fmt: skip
    sec.add(fmt("<details><summary>layer table</summary><pre>{}</pre></details>", text))


def page_activations(ctx: ReportContext, page: Page) -> None:
    sec = page.section("Activations", "activations")
    layers = default_layers(ctx.model, 4)
    if not layers:
        sec.text("The model has no spatial feature maps to show.", note=True)
        return
    acts = ctx.model.activations(ctx.x, layers)
    sec.text(
        "The {} most varied channels of {} layers from early to late, each standardised on its "
        "own. {}", ctx.channels, len(layers),
        code("onnxlens activations MODEL IMAGE --layers ... --out DIR"), note=True,
    )  # fmt: skip
    stats = []
    for layer in layers:
        a = to_nchw(acts[layer], ctx.model.layer(layer).layout)
        stats.append(layer_stats(layer, a).row())
        sec.heading(layer, "x".join(map(str, a.shape[1:])))
        for i, name in enumerate(ctx.names):
            chans = select_channels(a[i], ctx.channels)
            src = ctx.site.image(f"activations/{name}/{safe_filename(layer)}.png", channel_grid(a[i][chans], ncols=8))  # fmt: skip
            sec.add(figure(src, name, 270))
    sec.heading("Statistics over the images")
    sec.add(table(["layer", "C x H x W", "sparsity (<=0)", "blank channels", "mean", "max"], stats, {3, 4, 5}))  # fmt: skip


def page_filters(ctx: ReportContext, page: Page) -> None:
    try:
        layer, w = ctx.model.filters()
    except ConfigurationError:
        return
    sec = page.section("First-layer filters", "filters")
    src = ctx.site.image("filters.png", filter_grid(w))
    sec.add(figure(src, f"{layer}: {w.shape[0]} filters of {w.shape[1]}x{w.shape[2]}x{w.shape[3]}, min-max scaled per filter", 480))  # fmt: skip


def page_atlas_links(ctx: ReportContext, page: Page) -> None:
    """Per image and atlas layer, the atlas channels it excites most relative to their dataset
    max (mining's spatial score), each linked to its channel page."""
    if ctx.atlas is None:
        return
    root = ctx.atlas
    cfg = json.loads((root / "atlas.json").read_text())
    sec = page.section("In the atlas", "atlas")
    rel = Path(os.path.relpath(root.resolve(), ctx.out.resolve())).as_posix()
    sec.text(
        "Each image's strongest channels of the atlas at {} (the image's spatial max over the "
        "channel's best dataset score), linked to their pages.", link(f"{rel}/index.html", "atlas"), note=True,
    )  # fmt: skip
    from ..mining import load

    mined = load(root / "mining")
    layers = list(cfg["layers"])
    acts = ctx.model.activations(ctx.x, layers)
    for i, name in enumerate(ctx.names):
        parts: list[Markup] = [figure(f"images/{name}.png", name, 120)]
        for layer in layers:
            a = to_nchw(acts[layer][i : i + 1], ctx.model.layer(layer).layout)
            score = a.reshape(a.shape[0], a.shape[1], -1).max(2)[0]
            chans = np.asarray(cfg["channels"][layer])
            best = mined[layer]["values"][chans, 0]
            ratio = np.where(best > 0, score[chans] / np.where(best > 0, best, 1), 0)
            for j in np.argsort(-ratio, kind="stable")[:3]:
                c = int(chans[j])
                parts.append(fmt(
                    "<a href='{}'>{}</a>",
                    url(f"{rel}/channels/{layer_file(layer)}/c{c:04d}.html"),
                    figure(f"{rel}/data/vis/{layer_file(layer)}/c{c:04d}.png", f"{layer[-24:]} ch {c}: {ratio[j]:.2f}x", 120),
                ))  # fmt: skip
        sec.row(*parts)


#: The report's sections in order; each is `(ctx, page) -> None`.
SECTIONS: list[Callable[[ReportContext, Page], None]] = [
    page_predictions,
    page_atlas_links,
    page_top_gradcam,
    page_guided_gradcam,
    page_method_comparison,
    page_summary,
    page_activations,
    page_filters,
]


def build_report(
    model: Model | str | os.PathLike,
    images: Sequence[str | os.PathLike | np.ndarray],
    out: str | os.PathLike,
    *,
    names: Sequence[str] | None = None,
    labels: str | os.PathLike | Sequence[str] | None = None,
    atlas: str | os.PathLike | None = None,
    methods: Sequence[str] = DEFAULT_METHODS,
    top: int = 3,
    channels: int = 32,
    sections: Sequence[Callable[[ReportContext, Page], None]] | None = None,
    title: str | None = None,
    device: str = "auto",
    threads: int | None = None,
) -> Path:
    """Write the report of `images` (paths or uint8 RGB arrays) to `out`; returns its index.html.

    `labels`: class names (a file with one a line, or a list; default the ImageNet names for a
    1,000-class output). `atlas`: an atlas folder of the same model (`build_atlas`), linked from
    each image. `methods`: names from `onnxlens.methods.METHODS` for the comparison ("all" for
    every one). `sections` replaces the list of section builders (default `SECTIONS`)."""
    if not isinstance(model, Model):
        model = Model(model, device=device, threads=threads)
    if not images:
        raise ConfigurationError("no images given; pass one or more image files.")
    methods = list(METHODS) if list(methods) == ["all"] else list(methods)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ConfigurationError(
            f"unknown methods {unknown}; choose from {', '.join(METHODS)} or 'all'."
        )
    atlas_dir = Path(atlas) if atlas is not None else None
    if atlas_dir is not None and not (atlas_dir / "atlas.json").is_file():
        raise ConfigurationError(f"--atlas {str(atlas_dir)!r} holds no atlas; build one with `onnxlens atlas MODEL DATA --out DIR`.")  # fmt: skip
    if atlas_dir is not None:
        from ..mining.config import model_sha256

        saved = json.loads((atlas_dir / "atlas.json").read_text())
        if saved.get("model_sha256") != model_sha256(model):
            raise ConfigurationError(f"the atlas in {str(atlas_dir)!r} is of another model ({saved.get('model_name')}); pass an atlas of this model.")  # fmt: skip
    outp = Path(out)
    outp.mkdir(parents=True, exist_ok=True)
    if names is not None:
        if len(names) != len(images):
            raise ConfigurationError(f"{len(names)} names for {len(images)} images.")
        stems = unique_stems([safe_filename(n) for n in names])
    else:  # file names (told apart by their folders when they clash), image0... for arrays
        stems = unique_stems(
            [f"image{i}" if isinstance(p, np.ndarray) else p for i, p in enumerate(images)]
        )
    x, fitted = model.prepare(list(images))  # type: ignore[arg-type]
    assert fitted is not None
    n_cls = classifier_classes(model)
    logits = np.asarray(model.predict(x), np.float32).reshape(len(x), -1) if n_cls else None
    if isinstance(labels, str | os.PathLike):
        class_names: list[str] | None = read_labels(labels)
    elif labels is not None:
        class_names = list(labels)
    else:
        class_names = class_names_for(n_cls) if n_cls else None
    ctx = ReportContext(
        model, outp, list(stems), list(fitted), x, class_names, logits, channels=channels,
        top=max(1, min(top, n_cls or 1)), methods=methods, atlas=atlas_dir,
    )  # fmt: skip
    page = Page(
        title or f"onnxlens report: {model.name}",
        f"{model.name} · input {model.input_name} {tuple(model.input.shape or ())} · preprocessing: {model.preprocess.describe()}",
    )
    for build in sections or SECTIONS:
        t = time.perf_counter()
        build(ctx, page)
        # A section's graphs (VJPs, taps, synthesis objectives) are its own: free them, so the
        # next section's peak does not stack on this one's.
        model.clear_sessions()
        ctx.timings[build.__name__] = time.perf_counter() - t
        log.info("onnxlens: report section %s: %.1f s", build.__name__, ctx.timings[build.__name__])
    return ctx.site.write(page, "index.html")
