"""Image loading with OpenCV: any common format and bit depth, always returned as uint8 RGB (H, W, 3)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

from ..errors import ImageError
from .header import Header, HeaderError, read_header

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
# The bound on what a decode returns: bigger images come back scaled to fit (INTER_AREA), which
# loses nothing at a model's input resolution.
MAX_PIXELS = 64_000_000
# The bound on the memory that decodes in flight take together, in bytes: every decode reserves
# its peak (the image OpenCV allocates, plus the resized and colour-converted copies) from one
# process-wide budget before it starts, so eight decode threads of a mining run cannot hold
# eight gigapixel images at once. An image whose own peak is over the budget is refused from its
# header (or, for JPEG, decoded at 1/2, 1/4 or 1/8 scale by libjpeg, which needs only the reduced
# image), before OpenCV allocates anything.
DECODE_BUDGET_BYTES = 1 << 30
# Header bytes read before a decode: enough for any header but a JPEG behind huge metadata.
_HEADER_BYTES = 1 << 20

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


class DecodeBudget:
    """Bytes of decoding in flight, shared by every thread of the process (see
    DECODE_BUDGET_BYTES). `reserve(n)` waits until `n` bytes are free; `hold()` keeps what the
    calling thread reserves inside it until the `with` block ends, so a caller that decodes and
    then resizes (mining's decode threads) has the decoded image counted until it is dropped."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._in_use = 0
        self._local = threading.local()

    @property
    def in_use(self) -> int:
        return self._in_use

    @contextmanager
    def reserve(self, nbytes: int) -> Iterator[None]:
        total = DECODE_BUDGET_BYTES  # read per call, so a changed bound applies at once
        nbytes = min(int(nbytes), total)  # an image over the whole budget is refused before this
        with self._cond:
            self._cond.wait_for(lambda: self._in_use + nbytes <= total)
            self._in_use += nbytes
        held = getattr(self._local, "held", None)
        try:
            yield
        finally:
            if held is not None:
                held.append(nbytes)
            else:
                self._release(nbytes)

    @contextmanager
    def hold(self) -> Iterator[None]:
        outer = getattr(self._local, "held", None)
        self._local.held = held = [] if outer is None else outer
        try:
            yield
        finally:
            if outer is None:
                self._local.held = None
                self._release(sum(held))

    def _release(self, nbytes: int) -> None:
        if nbytes:
            with self._cond:
                self._in_use -= nbytes
                self._cond.notify_all()


DECODE_BUDGET = DecodeBudget()


def _imdecode(buf: np.ndarray, flags: int) -> np.ndarray | None:
    try:
        return cv2.imdecode(buf, flags)
    except cv2.error:  # some malformed headers raise instead of returning None
        return None


def _mb(n: float) -> str:
    return f"{n / 2**20:,.0f} MB"


def _peak_bytes(h: Header, scale: int = 1) -> int:
    """A decode's peak: the decoded image, then (when over MAX_PIXELS) its resized copy, then the
    RGB copy of that; 8-bit from the resize on."""
    px = -(-h.height // scale) * -(-h.width // scale)
    out = min(px, MAX_PIXELS) * min(h.channels, 4)
    return px * h.channels * h.depth + 2 * out


def _plan(buf: np.ndarray, what: str) -> tuple[Header | None, int, int]:
    """(header, OpenCV flags, bytes to reserve) for decoding `buf` within DECODE_BUDGET_BYTES;
    ImageError when no decode fits."""
    head = bytes(buf[:_HEADER_BYTES])
    try:
        try:
            h = read_header(head)
        except HeaderError:
            if len(buf) <= len(head) or head[:2] not in (b"II", b"MM"):
                raise
            h = read_header(bytes(buf))  # a TIFF's directory may sit at the end of the file
    except HeaderError:
        raise ImageError(_corrupt(what)) from None
    if h is None:
        raise ImageError(_corrupt(what))
    if h.height < 1 or h.width < 1:
        raise ImageError(f"{what} has no pixels: its header says {h.width}x{h.height}.")
    budget = DECODE_BUDGET_BYTES
    peak = _peak_bytes(h)
    if peak <= budget:
        return h, cv2.IMREAD_UNCHANGED, peak
    if h.format == "jpeg":
        # libjpeg scales while it decodes (DCT scaling), so only the reduced image is allocated.
        grey = h.channels == 1
        for scale, colour, gray in (
            (2, cv2.IMREAD_REDUCED_COLOR_2, cv2.IMREAD_REDUCED_GRAYSCALE_2),
            (4, cv2.IMREAD_REDUCED_COLOR_4, cv2.IMREAD_REDUCED_GRAYSCALE_4),
            (8, cv2.IMREAD_REDUCED_COLOR_8, cv2.IMREAD_REDUCED_GRAYSCALE_8),
        ):
            peak = _peak_bytes(h, scale)
            if peak <= budget:
                # IGNORE_ORIENTATION: the same pixels as the full-size (IMREAD_UNCHANGED) decode.
                return h, (gray if grey else colour) | cv2.IMREAD_IGNORE_ORIENTATION, peak
    mp = h.pixels / 1e6
    raise ImageError(
        f"{what} is {h.width}x{h.height} pixels ({mp:,.0f} MP); decoding it would take "
        f"{_mb(_peak_bytes(h))} of memory, over onnxlens' decode bound of {_mb(budget)}. Shrink "
        "it first (e.g. ImageMagick: `magick IN -resize 8000x8000 OUT`), or raise "
        "onnxlens.data.images.DECODE_BUDGET_BYTES if this machine has the memory."
    )


def _corrupt(what: str) -> str:
    return (
        f"cannot decode {what}: its bytes are corrupt, truncated or not an image format "
        f"onnxlens reads ({', '.join(IMAGE_EXTENSIONS)})."
    )


def decode_image(
    data: bytes | bytearray | memoryview | np.ndarray, what: str = "image"
) -> np.ndarray:
    """Encoded image bytes (a PNG, JPEG, ... file's contents) as uint8 RGB (H, W, 3).

    The one decoder behind every path (files, parquet rows), so all share its checks: empty,
    undecodable or oversized bytes raise ImageError naming `what` (e.g. "image 'a/b.png'"), an
    image over MAX_PIXELS comes back scaled down to fit, and the memory of the decode is bounded
    from the header before OpenCV allocates anything (DECODE_BUDGET_BYTES, shared by all
    threads).
    """
    buf = np.frombuffer(data, np.uint8)
    if buf.size == 0:
        raise ImageError(f"{what} is empty (0 bytes).")
    _, flags, peak = _plan(buf, what)
    with DECODE_BUDGET.reserve(peak):
        img = _imdecode(buf, flags)
        if img is None:
            raise ImageError(_corrupt(what))
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
