"""The model atlas: every chosen channel's feature visualisation beside the dataset patches
that excite it most, per-channel statistics, class visualisations, first-layer filters and an
embedding map, as a static site (OpenAI Microscope, for any ONNX model).

``build_atlas(model, data, out)`` runs every step, each cached and resumable in `out`, and
writes the site (`out/index.html`); the layout of `out` is in `onnxlens.atlas.build`.
"""

from __future__ import annotations

from .build import ENGINES, Atlas, build_atlas, layer_summary
from .config import AtlasConfig, choose_channels, choose_layers

__all__ = [
    "ENGINES",
    "Atlas",
    "AtlasConfig",
    "build_atlas",
    "choose_channels",
    "choose_layers",
    "layer_summary",
]
