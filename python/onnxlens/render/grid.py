"""Channel mosaics of activations, first-layer filter mosaics, and activation statistics."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

import onnxlens._core as _core
from onnxlens.errors import ConfigurationError, ShapeError
from onnxlens.render.colormap import check_colormap

__all__ = ["channel_grid", "channel_grid_values", "channel_stats", "filter_grid"]

#: Tiles are upscaled (nearest) until their shorter side reaches this many pixels.
MIN_TILE_PIXELS = 32


def _layout(count: int, h: int, w: int, ncols: int | None, pad: int, scale: int | None):
    if ncols is None:
        ncols = math.ceil(math.sqrt(count))
    if scale is None:
        scale = max(1, math.ceil(MIN_TILE_PIXELS / max(1, min(h, w))))
    if int(ncols) < 1 or int(pad) < 0 or int(scale) < 1:
        raise ConfigurationError(
            f"grid needs ncols >= 1, pad >= 0 and scale >= 1, got ncols={ncols}, pad={pad}, "
            f"scale={scale}"
        )
    return int(ncols), int(pad), int(scale)


def _acts3(acts: npt.ArrayLike) -> npt.NDArray[np.float32]:
    a = np.asarray(acts)
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 3:
        raise ShapeError(
            f"channel grid expects activations of shape (C, h, w), got {np.shape(acts)}; "
            "for a batch (N, C, h, w) pass acts[i] for image i"
        )
    if 0 in a.shape:
        raise ShapeError(f"channel grid got empty activations of shape {a.shape}")
    return np.ascontiguousarray(a, dtype=np.float32)


def channel_grid_values(
    acts: npt.ArrayLike,
    ncols: int | None = None,
    pad: int = 1,
    scale: int | None = None,
    pad_value: float = 0.0,
) -> npt.NDArray[np.float32]:
    """Float32 ``(Hm, Wm)`` mosaic of standardised channels (display values in [0, 255]).

    Each channel is standardised as in the classic Keras notebooks:
    ``clip((x - mean) / std * 64 + 128, 0, 255)`` with population mean/std over the channel's
    finite values (in float64). A constant channel (std 0) or one with no finite value is drawn
    flat at 128; non-finite pixels are drawn at 128. Tiles are ``(h * scale, w * scale)``
    (nearest-neighbour), ``ncols`` per row (default ``ceil(sqrt(C))``), separated and surrounded
    by ``pad`` pixels of ``pad_value``: ``Hm = nrows * h * scale + (nrows + 1) * pad``.
    ``scale=None`` picks the smallest factor that makes tiles at least 32 pixels.
    """
    a = _acts3(acts)
    ncols, pad, scale = _layout(a.shape[0], a.shape[1], a.shape[2], ncols, pad, scale)
    return _core.channel_grid_f32(a, ncols, pad, scale, float(pad_value))


def _rgb(color: tuple[int, int, int]) -> tuple[int, int, int]:
    r, g, b = (int(c) for c in color)
    return r, g, b


def channel_grid(
    acts: npt.ArrayLike,
    ncols: int | None = None,
    pad: int = 1,
    colormap: str | None = "viridis",
    scale: int | None = None,
    pad_color: tuple[int, int, int] = (255, 255, 255),
) -> npt.NDArray[np.uint8]:
    """uint8 RGB ``(Hm, Wm, 3)`` mosaic of the channels of one activation tensor ``(C, h, w)``.

    Layout and standardisation are those of :func:`channel_grid_values`; display value ``v``
    is coloured with ``colormap`` at index ``floor(v + 0.5)`` (``None`` means grey). Constant
    ("blank") channels come out flat (index 128, mid-colormap). ``(1, C, h, w)`` is accepted.
    """
    a = _acts3(acts)
    ncols, pad, scale = _layout(a.shape[0], a.shape[1], a.shape[2], ncols, pad, scale)
    cmap = "gray" if colormap is None else check_colormap(colormap)
    return _core.channel_grid_rgb(a, ncols, pad, scale, cmap, _rgb(pad_color))


def filter_grid(
    weights: npt.ArrayLike,
    ncols: int | None = None,
    pad: int = 1,
    scale: int | None = None,
    per_channel: bool = False,
    pad_color: tuple[int, int, int] = (255, 255, 255),
) -> npt.NDArray[np.uint8]:
    """uint8 RGB mosaic of convolution filters ``(O, I, kh, kw)`` (ONNX Conv weight layout).

    Each tile is min-max normalised on its own to ``floor(255 * t + 0.5)`` (a constant filter is
    flat 128; non-finite weights count as the minimum) and upscaled by ``scale`` (nearest;
    default: tiles of at least 32 pixels, so 3x3 filters are visible). ``I == 3`` is drawn as RGB
    (input channel order as the model expects, normally RGB), ``I == 1`` as grey; for other
    ``I`` each filter is the grey mean over its input channels, or with ``per_channel=True``
    one grey tile per (filter, input channel), ``I`` tiles per row by default.
    """
    w = np.asarray(weights)
    if w.ndim != 4 or 0 in w.shape:
        raise ShapeError(
            f"filter_grid expects conv weights of shape (O, I, kh, kw), got {w.shape}; "
            "for a channels-last (kh, kw, I, O) kernel pass w.transpose(3, 2, 0, 1)"
        )
    w = w.astype(np.float32, copy=False)
    o, i, kh, kw = w.shape
    if per_channel and i != 1:
        w = w.reshape(o * i, 1, kh, kw)
        if ncols is None:
            ncols = i
    elif i not in (1, 3):
        # float64 accumulation: the mean of a few hundred float32 weights, no overflow warnings
        w = w.mean(axis=1, keepdims=True, dtype=np.float64).astype(np.float32)
    w = np.ascontiguousarray(w)
    ncols, pad, scale = _layout(w.shape[0], kh, kw, ncols, pad, scale)
    return _core.filter_grid(w, ncols, pad, scale, _rgb(pad_color))


def channel_stats(acts: npt.ArrayLike) -> dict[str, Any]:
    """Sparsity and blank channels of one layer's activations over a batch.

    ``acts`` is ``(N, C, h, w)`` (or ``(N, C)`` for dense layers). Returns:

    - ``channels``: C
    - ``sparsity``: fraction of entries exactly 0 (e.g. after ReLU)
    - ``nonpositive``: fraction of entries ``<= 0``
    - ``channel_sparsity``: float64 ``(C,)``, fraction of exact zeros per channel
    - ``blank_channels``: number of channels constant over the whole batch (dead channels)
    - ``blank_channel_indices``: their indices, ascending

    NaN entries count as neither zero nor positive; a channel whose finite values are all equal
    (or that has none) counts as blank. No RuntimeWarnings are emitted.
    """
    a = np.asarray(acts)
    if a.ndim == 2:
        a = a[:, :, None, None]
    if a.ndim != 4:
        raise ShapeError(
            f"channel_stats expects activations of shape (N, C, h, w) or (N, C), got {a.shape}; "
            "for one image (C, h, w) pass acts[None]"
        )
    c = a.shape[1]
    if a.size == 0:
        raise ShapeError(f"channel_stats got empty activations of shape {a.shape}")
    per = np.moveaxis(a, 1, 0).reshape(c, -1)
    zeros = per == 0
    # fmin/fmax skip NaN without the all-NaN RuntimeWarning of nanmin/nanmax.
    lo = np.fmin.reduce(per, axis=1)
    hi = np.fmax.reduce(per, axis=1)
    blank = ~(hi > lo)
    total = per.size
    return {
        "channels": int(c),
        "sparsity": float(np.count_nonzero(zeros) / total),
        "nonpositive": float(np.count_nonzero(per <= 0) / total),
        "channel_sparsity": np.count_nonzero(zeros, axis=1) / per.shape[1],
        "blank_channels": int(np.count_nonzero(blank)),
        "blank_channel_indices": [int(i) for i in np.flatnonzero(blank)],
    }


def comparison_grid(
    images: np.ndarray | None, columns: list[np.ndarray], pad: int = 4
) -> np.ndarray:
    """uint8 RGB grid: one row per image, the input first then one overlay per method."""
    cols = ([images] if images is not None else []) + columns
    n, h, w = cols[0].shape[:3]
    grid = np.full((n * h + (n - 1) * pad, len(cols) * w + (len(cols) - 1) * pad, 3), 255, np.uint8)
    for j, col in enumerate(cols):
        for i in range(n):
            grid[i * (h + pad) : i * (h + pad) + h, j * (w + pad) : j * (w + pad) + w] = col[i]
    return grid
