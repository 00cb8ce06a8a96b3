"""Demo report pages for the attribution methods (page builders `(ctx, page) -> None`)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from ..methods.cam import GradCAM
from ..methods.explanation import softmax
from ..methods.gradients import GuidedBackprop, GuidedGradCAM
from ..methods.metrics import deletion, insertion
from ..methods.registry import METHODS, make
from ..render import comparison_grid, overlay
from ..render.html import Markup, Page, figure, table

if TYPE_CHECKING:
    from .pages import DemoContext

__all__ = ["page_guided_gradcam", "page_method_comparison", "page_top3_gradcam"]


def deprocess(g: np.ndarray, layout: str = "NCHW") -> np.ndarray:
    """An input-shaped gradient (C, H, W) as a uint8 RGB picture: standardised, 0.1 std around
    mid-grey (the classic guided-backprop rendering)."""
    img = g.transpose(1, 2, 0) if layout != "NHWC" else g
    img = (img - img.mean()) / (img.std() + 1e-5) * 0.1 + 0.5
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def page_top3_gradcam(ctx: DemoContext, page: Page) -> None:
    """Grad-CAM for each photo's three most probable classes (the classic elephant example)."""
    sec = page.section("Grad-CAM: the top-3 classes")
    probs = softmax(ctx.logits)
    top = np.argsort(-probs, axis=1)[:, :3]
    x3 = np.repeat(ctx.x, 3, axis=0)
    exp = GradCAM(ctx.model, progress=False).attribute(x3, target=top.reshape(-1))
    ov = exp.overlay(np.repeat(np.asarray(ctx.photos), 3, axis=0))
    sec.text(
        "Layer {}. Each class's evidence lands on its own object. "
        "<code>onnxlens explain MODEL IMAGE --method gradcam --target K --out DIR</code>",
        ", ".join(exp.layers),
        note=True,
    )
    for i, name in enumerate(ctx.names):
        parts = [figure(f"images/{name}.png", name, 200)]
        for k in range(3):
            c = int(top[i, k])
            src = ctx.site.image(f"explain/top3/{name}_{k}.png", ov[i * 3 + k])
            parts.append(figure(src, f"{ctx.classes[c]} ({probs[i, c]:.1%})", 200))
        sec.row(*parts)


def page_guided_gradcam(ctx: DemoContext, page: Page) -> None:
    """Grad-CAM, guided backprop and their product for each photo's top class."""
    sec = page.section("Guided Grad-CAM")
    ggc = GuidedGradCAM(ctx.model, progress=False).attribute(ctx.x)
    gb = GuidedBackprop(ctx.model, progress=False).attribute(ctx.x, target=ggc.target)
    cam_ov = overlay(np.asarray(ctx.photos), ggc.extras["gradcam"])  # its own Grad-CAM
    sec.text(
        "Grad-CAM (where), guided backpropagation (which pixels, class-agnostic detail) and "
        "guided Grad-CAM (their product: fine detail of the class's region).",
        note=True,
    )
    for i, name in enumerate(ctx.names):
        c = int(ggc.target[i])
        pics = [
            ("gradcam", cam_ov[i]),
            ("guided", deprocess(gb.raw[i], ctx.model.layout)),
            ("guided Grad-CAM", deprocess(ggc.raw[i], ctx.model.layout)),
        ]
        parts = []
        for label, rgb in pics:
            src = ctx.site.image(f"explain/guided/{name}_{label.replace(' ', '_')}.png", rgb)
            parts.append(figure(src, f"{label}: {ctx.classes[c]}", 200))
        sec.row(*parts)


# Kept cheap enough for the demo: Score-CAM's C forward passes per photo dominate. Per-call
# knobs, in captum's names, for `attribute`.
_DEMO_SETTINGS: dict[str, dict[str, Any]] = {
    "smoothgrad": {"nt_samples": 16},
    "ig": {"n_steps": 32},
    "occlusion": {"sliding_window_shapes": 32, "strides": 16},
}


def page_method_comparison(ctx: DemoContext, page: Page) -> None:
    """Every method on every photo (top class), with deletion/insertion AUC and run time."""
    sec = page.section("Attribution methods compared")
    cols, rows = [], []
    for name in METHODS:
        t = time.perf_counter()
        exp = make(name, ctx.model, progress=False).attribute(ctx.x, **_DEMO_SETTINGS.get(name, {}))
        dt = time.perf_counter() - t
        cols.append(exp.overlay(np.asarray(ctx.photos)))
        d = deletion(ctx.model, exp, steps=16, progress=False).mean_auc
        ins = insertion(ctx.model, exp, steps=16, progress=False).mean_auc
        rows.append([name, f"{dt:.2f} s", f"{d:.3f}", f"{ins:.3f}"])
    src = ctx.site.image("explain/comparison.png", comparison_grid(np.asarray(ctx.photos), cols))
    sec.text(
        "Rows: photos; columns: the input, then {}. "
        "<code>onnxlens explain MODEL IMAGE... --method all --out DIR</code>",
        ", ".join(METHODS),
        note=True,
    )
    sec.add(
        figure(src, "", 1400),
        Markup("<h3>Faithfulness (mean over the photos)</h3>"),
    )
    sec.text(
        "Deletion AUC: probability of the class as the most important pixels are zeroed first "
        "(lower is better). Insertion AUC: as they are inserted into a blurred copy "
        "(higher is better).",
        note=True,
    )
    sec.add(table(["method", "time", "deletion AUC", "insertion AUC"], rows, {1, 2, 3}))
