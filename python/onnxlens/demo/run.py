"""run_demo: every page builder of the demo report over the built-in model and photos."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from ..data.classes import imagenet_classes
from ..model import Model
from ..render.html import Page
from .assets import demo_photos, export_efficientnet_lite0
from .attribution import page_guided_gradcam, page_method_comparison, page_top3_gradcam
from .pages import (
    DemoContext,
    page_activations,
    page_filters,
    page_predictions,
    page_summary,
)
from .synthesis import page_visualisation
from .synthesis_methods import page_synthesis_methods

log = logging.getLogger("onnxlens")

#: The report's sections in order; each is `(ctx, page) -> None`. Later capabilities add theirs.
PAGES: list[Callable[[DemoContext, Page], None]] = [
    page_predictions,
    page_top3_gradcam,
    page_guided_gradcam,
    page_method_comparison,
    page_summary,
    page_activations,
    page_filters,
    page_visualisation,
    page_synthesis_methods,
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
    page = Page(
        "onnxlens demo: EfficientNet-Lite0 (ImageNet weights)",
        f"{path.name} · input {model.input_name} {tuple(model.input.shape or ())} · preprocessing: {model.preprocess.describe()}",
    )
    for build in PAGES:
        t = time.perf_counter()
        build(ctx, page)
        ctx.timings[build.__name__] = time.perf_counter() - t
    index = ctx.site.write(page, "index.html")
    log.info("demo finished in %.1fs", time.perf_counter() - t0)
    return index
