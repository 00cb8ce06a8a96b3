"""Writing rendered RGB arrays to disk."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from onnxlens.errors import ImageError, ShapeError

__all__ = ["save_png"]


def save_png(path: str | os.PathLike[str], rgb: npt.ArrayLike) -> Path:
    """Write a uint8 RGB ``(H, W, 3)`` or grey ``(H, W)`` image as PNG; returns the path.

    OpenCV writes BGR, so channels are swapped here; the caller always passes RGB.
    """
    img = np.asarray(rgb)
    if img.dtype != np.uint8:
        raise ShapeError(f"save_png expects uint8 pixels, got {img.dtype}")
    if not (img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 3)):
        raise ShapeError(
            f"save_png expects an RGB (H, W, 3) or grey (H, W) image, got {img.shape}; "
            "for a batch from overlay() save each image: save_png(path, out[i])"
        )
    out = Path(path)
    if out.suffix.lower() != ".png":
        raise ImageError(f"save_png writes PNG files; use a path ending in .png, got {str(out)!r}")
    if not out.parent.is_dir():
        raise ImageError(f"cannot write {str(out)!r}: directory {str(out.parent)!r} does not exist")
    bgr = img if img.ndim == 2 else np.ascontiguousarray(img[:, :, ::-1])
    if not cv2.imwrite(str(out), bgr):
        raise ImageError(f"OpenCV could not write {str(out)!r} (permissions or disk space?)")
    return out
