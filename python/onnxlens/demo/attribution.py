"""Demo report pages for the attribution methods (page builders `(ctx, report) -> None`)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from ..methods.cam import GradCAM
from ..methods.explanation import softmax
from ..methods.gradients import GuidedBackprop, GuidedGradCAM
from ..methods.metrics import deletion, insertion
from ..methods.registry import METHODS, make
from ..render import comparison_grid, overlay
from ..render.report import Report, esc, write_png

if TYPE_CHECKING:
    from .pages import DemoContext

__all__ = ["page_guided_gradcam", "page_method_comparison", "page_top3_gradcam"]


def deprocess(g: np.ndarray, layout: str = "NCHW") -> np.ndarray:
    """An input-shaped gradient (C, H, W) as a uint8 RGB picture: standardised, 0.1 std around
    mid-grey (the classic guided-backprop rendering)."""
    img = g.transpose(1, 2, 0) if layout != "NHWC" else g
    img = (img - img.mean()) / (img.std() + 1e-5) * 0.1 + 0.5
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def page_top3_gradcam(ctx: DemoContext, report: Report) -> None:
    """Grad-CAM for each photo's three most probable classes (the classic elephant example)."""
    sec = report.section("Grad-CAM: the top-3 classes")
    probs = softmax(ctx.logits)
    top = np.argsort(-probs, axis=1)[:, :3]
    x3 = np.repeat(ctx.x, 3, axis=0)
    exp = GradCAM(ctx.model, progress=False).attribute(x3, target=top.reshape(-1))
    ov = exp.overlay(np.repeat(np.asarray(ctx.photos), 3, axis=0))
    sec.parts.append(
        f"<p class='note'>Layer {esc(', '.join(exp.layers))}. Each class's evidence lands on its own object. "
        "<code>onnxlens explain MODEL IMAGE --method gradcam --target K --out DIR</code></p>"
    )
    for i, name in enumerate(ctx.names):
        parts = [Report.figure(f"images/{name}.png", esc(name), 200)]
        for k in range(3):
            c = int(top[i, k])
            src = f"explain/top3/{name}_{k}.png"
            write_png(ctx.out / src, ov[i * 3 + k])
            parts.append(Report.figure(src, f"{esc(ctx.classes[c])} ({probs[i, c]:.1%})", 200))
        sec.parts.append("<div>" + "".join(parts) + "</div>")


def page_guided_gradcam(ctx: DemoContext, report: Report) -> None:
    """Grad-CAM, guided backprop and their product for each photo's top class."""
    sec = report.section("Guided Grad-CAM")
    ggc = GuidedGradCAM(ctx.model, progress=False).attribute(ctx.x)
    gb = GuidedBackprop(ctx.model, progress=False).attribute(ctx.x, target=ggc.target)
    cam_ov = overlay(np.asarray(ctx.photos), ggc.extras["gradcam"])  # its own Grad-CAM
    sec.parts.append(
        "<p class='note'>Grad-CAM (where), guided backpropagation (which pixels, class-agnostic detail) and "
        "guided Grad-CAM (their product: fine detail of the class's region).</p>"
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
            src = f"explain/guided/{name}_{label.replace(' ', '_')}.png"
            write_png(ctx.out / src, rgb)
            parts.append(Report.figure(src, f"{esc(label)}: {esc(ctx.classes[c])}", 200))
        sec.parts.append("<div>" + "".join(parts) + "</div>")


# Kept cheap enough for the demo: Score-CAM's C forward passes per photo dominate.
_DEMO_SETTINGS = {
    "smoothgrad": {"samples": 16},
    "ig": {"steps": 32},
    "occlusion": {"window": 32, "stride": 16},
}


def page_method_comparison(ctx: DemoContext, report: Report) -> None:
    """Every method on every photo (top class), with deletion/insertion AUC and run time."""
    sec = report.section("Attribution methods compared")
    cols, rows = [], []
    for name in METHODS:
        t = time.perf_counter()
        exp = make(name, ctx.model, progress=False, **_DEMO_SETTINGS.get(name, {})).attribute(ctx.x)
        dt = time.perf_counter() - t
        cols.append(exp.overlay(np.asarray(ctx.photos)))
        d = deletion(ctx.model, exp, steps=16, progress=False).mean_auc
        ins = insertion(ctx.model, exp, steps=16, progress=False).mean_auc
        rows.append([name, f"{dt:.2f} s", f"{d:.3f}", f"{ins:.3f}"])
    write_png(ctx.out / "explain/comparison.png", comparison_grid(np.asarray(ctx.photos), cols))
    sec.parts.append(
        "<p class='note'>Rows: photos; columns: the input, then "
        + esc(", ".join(METHODS))
        + ". <code>onnxlens explain MODEL IMAGE... --method all --out DIR</code></p>"
        + Report.figure("explain/comparison.png", "", 1400)
        + "<h3>Faithfulness (mean over the photos)</h3><p class='note'>Deletion AUC: probability of the class as the most "
        "important pixels are zeroed first (lower is better). Insertion AUC: as they are inserted into a blurred copy "
        "(higher is better).</p>"
        + Report.table(["method", "time", "deletion AUC", "insertion AUC"], rows, {1, 2, 3})
    )
