"""Rendering: colormaps, heat-map overlays, upsampling, channel and filter grids, PNG output,
safe file names, and the HTML pages (`onnxlens.render.html`).

All arrays follow the package convention: maps are float32 ``(N, h, w)``, images uint8 RGB
``(N, H, W, 3)``, sizes ``(H, W)``. The loops run in ``onnxlens._core`` (OpenMP, GIL released).
"""

from __future__ import annotations

from onnxlens.render.colormap import COLORMAPS, apply_colormap, colormap_table
from onnxlens.render.grid import (
    channel_grid,
    channel_grid_values,
    channel_stats,
    comparison_grid,
    filter_grid,
)
from onnxlens.render.io import safe_filename, save_png
from onnxlens.render.overlay import overlay, upsample

__all__ = [
    "COLORMAPS",
    "apply_colormap",
    "channel_grid",
    "channel_grid_values",
    "channel_stats",
    "colormap_table",
    "comparison_grid",
    "filter_grid",
    "overlay",
    "safe_filename",
    "save_png",
    "upsample",
]
