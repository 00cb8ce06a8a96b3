"""The built-in demo: EfficientNet-Lite0 with its real ImageNet weights on real photos.

The model is exported from PyTorch to ONNX once into the cache directory ($ONNXLENS_CACHE, else
~/.cache/onnxlens), then everything else runs on the .onnx file alone, as it would on any
user's exported model. The report is `onnxlens report` with the demo's synthesis pages (`demo.run.PAGES`), linked
into a small atlas of the model over the photos and their crops (`demo.run.ATLAS`).
"""

from __future__ import annotations

from .assets import LITE0_PREPROCESS, cache_dir, demo_photos, export_efficientnet_lite0
from .run import PAGES, run_demo

__all__ = [
    "LITE0_PREPROCESS",
    "PAGES",
    "cache_dir",
    "demo_photos",
    "export_efficientnet_lite0",
    "run_demo",
]
