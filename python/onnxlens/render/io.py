"""Writing rendered RGB arrays to disk, and the one way a name becomes a file name."""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from onnxlens.errors import ImageError, ShapeError

__all__ = ["OutputNames", "safe_filename", "save_png", "unique_stems"]


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


class OutputNames:
    """The per-run allocator of output names: every `take` returns a file-name stem that no
    earlier `take` of this allocator returned, compared case-insensitively (macOS and Windows
    file systems fold case), so no output of a run overwrites another.

    `take(name)` is `safe_filename(name)` when that is still free, else the first free of
    ``<stem>_2``, ``<stem>_3``, ...; the same sequence of calls gives the same names in every run.
    `reserved` names (files the command writes itself, e.g. ``comparison.png``) are never given.
    """

    def __init__(self, reserved: Iterable[str] = (), max_len: int = 80) -> None:
        self._taken = {r.casefold() for r in reserved}
        self.max_len = max_len

    def take(self, name: str) -> str:
        stem = safe_filename(name, self.max_len)
        out, k = stem, 1
        while out.casefold() in self._taken:
            k += 1
            out = f"{stem}_{k}"
        self._taken.add(out.casefold())
        return out

    def __contains__(self, stem: str) -> bool:
        return stem.casefold() in self._taken


def unique_stems(
    paths: Sequence[str | os.PathLike[str]], reserved: Iterable[str] = ()
) -> list[str]:
    """One distinct, file-system-safe stem per input path, in order (see `OutputNames`).

    A path's stem is its file name without the extension; inputs whose stems clash (the same
    name in different folders, names equal but for case, or the same file given twice) are told
    apart by their parent folders (``a/x.jpg`` -> ``a_x``, ``b/x.jpg`` -> ``b_x``), and by a
    ``_2``, ``_3`` ... suffix when the folders do not tell them apart either.
    """
    parts = [Path(os.fspath(p)).with_suffix("").parts or ("x",) for p in paths]
    depth = [1] * len(parts)

    def name(i: int) -> str:
        return "_".join(parts[i][-depth[i] :])

    # Deepen the clashing names until they differ or run out of folders.
    while True:
        groups: dict[str, list[int]] = {}
        for i in range(len(parts)):
            groups.setdefault(safe_filename(name(i)).casefold(), []).append(i)
        grew = False
        for members in groups.values():
            if len(members) > 1 and len({parts[i] for i in members}) > 1:
                for i in members:
                    if depth[i] < len(parts[i]):
                        depth[i] += 1
                        grew = True
        if not grew:
            break
    alloc = OutputNames(reserved)
    return [alloc.take(name(i)) for i in range(len(parts))]
