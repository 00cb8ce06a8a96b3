"""run_demo: the per-image report (`onnxlens report`) of the built-in model and photos, linked into
a small atlas (`onnxlens atlas`) of the same model over the photos and their crops, plus the
demo's synthesis sections."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..atlas import build_atlas
from ..atlas.report import SECTIONS, ReportContext, build_report
from ..model import Model
from ..render.html import Page
from ..render.io import save_png
from .assets import demo_photos, export_efficientnet_lite0, photo_crops
from .synthesis import page_visualisation
from .synthesis_methods import page_synthesis_methods

log = logging.getLogger("onnxlens")

#: The report's sections in order: the generic report's, then the demo's synthesis pages. Each
#: is `(ctx, page) -> None`.
PAGES: list[Callable[[ReportContext, Page], None]] = [
    *SECTIONS,
    page_visualisation,
    page_synthesis_methods,
]

#: The demo's atlas: three depths of EfficientNet-Lite0, 16 channels each (`onnxlens atlas`'s
#: default), short optimisations at 96x96 (it defaults to 256 steps at 128x128).
ATLAS_LAYERS = ["/_blocks.4/Add_output_0", "/_blocks.9/Add_output_0", "/_blocks.13/Add_output_0"]
ATLAS = {
    "channels": 16,
    "steps": 32,
    "size": (96, 96),
    "top_k": 6,
    "link_images": 4,
    "n_classes": 4,
}


def _atlas_data(model: Model, photos: list[np.ndarray], folder: Path) -> Path:
    """The photos and random crops of them as PNG files: the atlas' DATA."""
    folder.mkdir(parents=True, exist_ok=True)
    fitted = [model.preprocess.fit(p) for p in photos]
    size = model.preprocess.size
    crops = photo_crops(fitted, (int(size[0]), int(size[1])), np.random.default_rng(0))
    for i, img in enumerate([*fitted, *crops]):
        path = folder / f"{i:03d}.png"
        if not path.exists():
            save_png(path, img)
    return folder


def run_demo(
    out_dir: str | Path = "onnxlens-demo",
    model_path: str | Path | None = None,
    device: str = "auto",
) -> Path:
    """Export (once) and explain EfficientNet-Lite0 on real photos; returns the report's index.html
    (the atlas is in its `atlas/` folder, linked from each image)."""
    t0 = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = export_efficientnet_lite0(model_path)
    model = Model(path, device=device)
    names, raw = zip(*demo_photos(), strict=True)
    data = _atlas_data(model, list(raw), out / "atlas-data")
    build_atlas(model, data, out / "atlas", layers=ATLAS_LAYERS, progress=False, **ATLAS)  # type: ignore[arg-type]
    log.info("demo: atlas in %.1fs", time.perf_counter() - t0)
    model.clear_sessions()  # the atlas' graphs are done with: free them before the report
    index = build_report(
        model, list(raw), out, names=list(names), atlas=out / "atlas",
        sections=PAGES,
        title="onnxlens demo: EfficientNet-Lite0 (ImageNet weights)",
    )  # fmt: skip
    log.info("demo finished in %.1fs", time.perf_counter() - t0)
    return index
