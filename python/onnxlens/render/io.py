"""Writing rendered RGB arrays to disk, and the one way a name becomes a file name."""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from onnxlens.errors import ImageError, ShapeError

__all__ = ["safe_filename", "save_png"]


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


_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")
# A clean name that already ends like a hashed one gets hashed too, so an unchanged name can never
# equal the output for some other name.
_HASHED = re.compile(r"-[0-9a-f]{8}$")
# Device names Windows refuses as a file's stem, whatever the extension.
_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"{d}{i}" for d in ("COM", "LPT") for i in range(1, 10))}


def safe_filename(name: str, max_len: int = 80) -> str:
    """A file-name stem for `name` (a tensor, layer or image name) that is safe on every OS.

    Names made only of ASCII letters, digits, ``_``, ``.`` and ``-`` (not starting or ending with
    ``.`` or ``_``, not starting with ``-``) and at most `max_len` long come back unchanged. Any
    other name keeps a readable ASCII part (accents dropped, ``é`` -> ``e``; runs of other
    characters, path separators included, become ``_``; the tail is kept when too long, since
    tensor names differ most at the end) and gains ``-`` plus 8 hex digits of the SHA-256 of the
    name, the same in every run and on every machine. An unchanged name never ends that way, so
    it cannot equal another name's result; two changed names clash only if both their readable
    parts and their 32-bit hashes agree. (Names differing only in case stay distinct strings, as
    ONNX allows, but share a file on case-insensitive file systems.)
    """
    ascii_ = "".join(
        ch for ch in unicodedata.normalize("NFKD", name) if not unicodedata.combining(ch)
    )
    cleaned = _UNSAFE.sub("_", ascii_).strip("._").lstrip("-")
    if (
        cleaned == name
        and 0 < len(name) <= max_len
        and not _HASHED.search(name)
        and name.split(".")[0].upper() not in _RESERVED
    ):
        return name
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    keep = max(1, max_len - len(digest) - 1)
    part = cleaned[-keep:].lstrip("._-") or "x"
    return f"{part}-{digest}"
