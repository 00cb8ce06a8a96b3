"""Image loading with OpenCV: any common format and bit depth, always returned as uint8 RGB (H, W, 3)."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from ..errors import ImageError

IMAGE_EXTENSIONS = (
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".webp",
    ".tif",
    ".tiff",
    ".ppm",
    ".pgm",
    ".jp2",
)
# Decoding a gigapixel scan would take gigabytes; bigger images are decoded at reduced size
# (OpenCV's IMREAD_REDUCED_* flags), which loses nothing at the model's input resolution.
MAX_PIXELS = 64_000_000

ImageLike = str | os.PathLike | np.ndarray


def to_rgb8(img: np.ndarray, what: str = "image") -> np.ndarray:
    """Any decoded image or user array -> contiguous uint8 RGB (H, W, 3).

    Channel order of arrays is taken as RGB (already decoded). Grayscale is replicated, alpha is
    composited over white (transparent regions of logos and icons are white on screen), 16-bit is
    scaled by 1/257, floats are taken as [0, 1] when their max is <= 1 else as [0, 255].
    """
    a = np.asarray(img)
    if a.size == 0:
        raise ImageError(f"{what} is empty (shape {a.shape}).")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise ImageError(
            f"{what} has shape {a.shape}; expected (H, W), (H, W, 3) or (H, W, 4). For a CHW array "
            "pass arr.transpose(1, 2, 0)."
        )
    if a.dtype == np.uint8:
        f = None
    elif a.dtype == np.uint16:
        f = a.astype(np.float32) / 257.0
    elif a.dtype == np.bool_:
        f = a.astype(np.float32) * 255.0
    elif np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer):
        f = a.astype(np.float32)
        if not np.isfinite(f).all():
            raise ImageError(f"{what} contains NaN or infinite values.")
        if np.issubdtype(a.dtype, np.floating) and f.max(initial=0.0) <= 1.0:
            f = f * 255.0
    else:
        raise ImageError(f"{what} has dtype {a.dtype}; expected uint8, uint16 or float.")
    if f is not None:
        a = np.clip(np.rint(f), 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    elif a.shape[2] == 4:
        alpha = a[:, :, 3:4].astype(np.float32) / 255.0
        a = np.rint(a[:, :, :3] * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
    return np.ascontiguousarray(a)


def _imdecode(buf: np.ndarray, flags: int) -> np.ndarray | None:
    try:
        return cv2.imdecode(buf, flags)
    except cv2.error:  # some malformed headers raise instead of returning None
        return None


def decode_image(
    data: bytes | bytearray | memoryview | np.ndarray, what: str = "image"
) -> np.ndarray:
    """Encoded image bytes (a PNG, JPEG, ... file's contents) as uint8 RGB (H, W, 3).

    The one decoder behind every path (files, parquet rows), so all share its checks: empty or
    undecodable bytes raise ImageError naming `what` (e.g. "image 'a/b.png'"), and an image over
    MAX_PIXELS comes back scaled down to fit.
    """
    buf = np.frombuffer(data, np.uint8)
    if buf.size == 0:
        raise ImageError(f"{what} is empty (0 bytes).")
    img = _imdecode(buf, cv2.IMREAD_UNCHANGED)
    if img is None:
        # Headers that promise more pixels than OpenCV allows decode at a reduced size instead.
        for reduced in (
            cv2.IMREAD_REDUCED_COLOR_2,
            cv2.IMREAD_REDUCED_COLOR_4,
            cv2.IMREAD_REDUCED_COLOR_8,
        ):
            img = _imdecode(buf, reduced)
            if img is not None:
                break
    if img is None:
        raise ImageError(
            f"cannot decode {what}: its bytes are corrupt, truncated or not an image format "
            f"OpenCV reads ({', '.join(IMAGE_EXTENSIONS)})."
        )
    h, w = img.shape[:2]
    if h * w > MAX_PIXELS:  # grayscale too: to_rgb8 triples it
        scale = (MAX_PIXELS / (h * w)) ** 0.5
        # Floor, not round, so the result is within the bound, not one row over it.
        size = (max(1, int(w * scale)), max(1, int(h * scale)))
        img = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
    if img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)
    return to_rgb8(img, what)


def load_image(src: ImageLike) -> np.ndarray:
    """Read an image file (or take an array) as uint8 RGB (H, W, 3); files go through
    `decode_image`."""
    if isinstance(src, np.ndarray):
        return to_rgb8(src, "image array")
    path = Path(src)
    if not path.exists():
        raise ImageError(f"image {str(path)!r} does not exist.")
    if path.is_dir():
        raise ImageError(f"{str(path)!r} is a folder, not an image.")
    data = np.fromfile(str(path), dtype=np.uint8)  # fromfile+imdecode: non-ASCII paths work too
    return decode_image(data, f"image {str(path)!r}")


def is_image_file(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS
