"""Heat-map overlays and bilinear upsampling of (N, h, w) maps, backed by onnxlens._core."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

import onnxlens._core as _core
from onnxlens.errors import ConfigurationError, ShapeError
from onnxlens.render.colormap import check_colormap

__all__ = ["overlay", "upsample"]


def _size(size: tuple[int, int] | list[int]) -> tuple[int, int]:
    try:
        height, width = (int(s) for s in size)
    except (TypeError, ValueError):
        raise ShapeError(f"size must be (H, W), got {size!r}") from None
    if height < 1 or width < 1:
        raise ShapeError(f"size must be (H, W) with H, W >= 1, got {size!r}")
    return height, width


def upsample(maps: npt.ArrayLike, size: tuple[int, int]) -> npt.NDArray[np.float32]:
    """Bilinearly resize maps to ``size = (H, W)``, equal to ``cv2.resize(m, (W, H), INTER_LINEAR)``
    per map within 1e-5 (half-pixel centres, edges clamped; downscaling is plain bilinear too).

    ``maps`` is ``(h, w)``, ``(N, h, w)`` or ``(N, C, h, w)``; the result keeps the leading axes:
    ``(H, W)``, ``(N, H, W)`` or ``(N, C, H, W)``, float32.
    """
    arr = np.asarray(maps)
    if arr.ndim not in (2, 3, 4):
        raise ShapeError(
            f"upsample expects maps of shape (h, w), (N, h, w) or (N, C, h, w), got {arr.shape}; "
            "index or reshape your array first (e.g. cams[:, None] is not needed, cams[0] is (h, w))"
        )
    if arr.shape[-1] == 0 or arr.shape[-2] == 0:
        raise ShapeError(f"upsample got empty maps of shape {arr.shape}")
    height, width = _size(size)
    lead = arr.shape[:-2]
    flat = np.ascontiguousarray(arr.reshape(-1, *arr.shape[-2:]), dtype=np.float32)
    out = _core.resize_bilinear(flat, height, width)
    return out.reshape(*lead, height, width)


def overlay(
    images: npt.ArrayLike,
    maps: npt.ArrayLike,
    colormap: str = "jet",
    alpha: float = 0.5,
    out: npt.NDArray[np.uint8] | None = None,
) -> npt.NDArray[np.uint8]:
    """Blend colour-mapped heat maps over RGB images in one fused pass.

    Args:
        images: uint8 RGB, ``(N, H, W, 3)`` or one image ``(H, W, 3)`` (used for every map).
        maps: ``(N, h, w)``, ``(N, 1, h, w)`` or one map ``(h, w)``; any real dtype (converted
            to float32). Each map is upsampled to ``(H, W)`` exactly like :func:`upsample`, then
            min-max normalised on its own: ``t = (v - min) * (255 / (max - min))``, colour index
            ``floor(t + 0.5)``. A constant map gets index 0 everywhere; NaN and +-inf count as
            the map's finite minimum (an all-NaN map is treated as constant).
        colormap: one of :data:`onnxlens.render.COLORMAPS`.
        alpha: weight of the colour, ``out = floor((1 - alpha) * image + alpha * colour + 0.5)``.
        out: optional uint8 C-contiguous ``(N, H, W, 3)`` array to write into (it may be the
            ``images`` array itself, for in-place blending). Reusing one buffer across calls
            saves the page faults of a fresh allocation.

    Returns:
        uint8 ``(N, H, W, 3)`` RGB (always batched, also for a single image and map).
    """
    img = np.asarray(images)
    if img.dtype != np.uint8:
        raise ShapeError(
            f"overlay expects uint8 RGB images, got dtype {img.dtype}; convert with "
            "np.clip(img * 255, 0, 255).astype(np.uint8) for [0, 1] floats"
        )
    if img.ndim == 3:
        img = img[None]
    if img.ndim != 4 or img.shape[-1] != 3:
        raise ShapeError(
            f"overlay expects images of shape (N, H, W, 3) or (H, W, 3) (RGB, channels last), "
            f"got {np.shape(images)}; for (N, 3, H, W) pass images.transpose(0, 2, 3, 1)"
        )
    m = np.asarray(maps)
    if m.ndim == 4 and m.shape[1] == 1:
        m = m[:, 0]
    if m.ndim == 2:
        m = m[None]
    if m.ndim != 3:
        raise ShapeError(
            f"overlay expects maps of shape (N, h, w), (N, 1, h, w) or (h, w), got {np.shape(maps)}"
        )
    if m.shape[1] == 0 or m.shape[2] == 0:
        raise ShapeError(f"overlay got empty maps of shape {np.shape(maps)}")
    if img.shape[0] != m.shape[0]:
        if img.shape[0] == 1:
            img = np.broadcast_to(img, (m.shape[0], *img.shape[1:]))
        else:
            raise ShapeError(
                f"overlay got {img.shape[0]} images but {m.shape[0]} maps; pass one map per "
                "image, or a single image to overlay every map on it"
            )
    if not 0.0 <= float(alpha) <= 1.0:
        raise ConfigurationError(f"alpha must be in [0, 1], got {alpha}")
    return _core.overlay(
        np.ascontiguousarray(img),
        np.ascontiguousarray(m, dtype=np.float32),
        check_colormap(colormap),
        float(alpha),
        out,
    )
