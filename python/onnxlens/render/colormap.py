"""Colormaps: 256-entry RGB tables frozen from matplotlib (see scripts/gen_colormaps.py)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

import onnxlens._core as _core
from onnxlens.errors import ConfigurationError

__all__ = ["COLORMAPS", "apply_colormap", "colormap_table"]

#: Names accepted wherever a ``colormap=`` argument is taken.
COLORMAPS: tuple[str, ...] = tuple(_core.colormap_names())


def check_colormap(name: str) -> str:
    """Return ``name`` if it is a known colormap, else raise ConfigurationError listing them."""
    if name not in COLORMAPS:
        raise ConfigurationError(f"unknown colormap {name!r}; use one of: {', '.join(COLORMAPS)}")
    return name


def colormap_table(name: str) -> npt.NDArray[np.uint8]:
    """The uint8 ``(256, 3)`` RGB table of colormap ``name``.

    Entry ``i`` equals ``round(255 * matplotlib.colormaps[name](i / 255))[:3]``.
    """
    return _core.colormap_table(check_colormap(name))


def apply_colormap(maps01: npt.ArrayLike, colormap: str = "jet") -> npt.NDArray[np.uint8]:
    """Colour values in ``[0, 1]`` (any shape) -> uint8 RGB of shape ``(*maps01.shape, 3)``.

    The index rule, shared by every onnxlens kernel: ``floor(clip(v, 0, 1) * 255 + 0.5)``
    computed in float32 (round half up); NaN maps to index 0. Values are not rescaled: normalise
    first (``overlay`` does its own per-map min-max).
    """
    values = np.ascontiguousarray(maps01, dtype=np.float32)
    return _core.apply_colormap(values, check_colormap(colormap))
