"""Typed stub of the private C++ extension onnxlens._core (csrc/).

Every array argument must already have the exact dtype, be C-contiguous and have the stated
rank: otherwise TypeError (dtype / not an array) or ValueError (rank, shape, layout) naming what
was expected and what came. Nothing is cast silently. The loops release the GIL.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

openmp: bool

def max_threads() -> int: ...

# --- render (csrc/bind_render.cpp) ------------------------------------------------------------

def resize_bilinear(
    maps: npt.NDArray[np.float32], height: int, width: int
) -> npt.NDArray[np.float32]:
    """float32 (N, h, w) -> (N, height, width); cv2.resize INTER_LINEAR per map."""

def colormap_names() -> list[str]: ...
def colormap_table(name: str) -> npt.NDArray[np.uint8]:
    """uint8 (256, 3) RGB table."""

def apply_colormap(values: npt.NDArray[np.float32], colormap: str) -> npt.NDArray[np.uint8]:
    """float32 (...) in [0, 1] -> uint8 (..., 3); index floor(clip(v, 0, 1) * 255 + 0.5), NaN -> 0."""

def overlay(
    images: npt.NDArray[np.uint8],
    maps: npt.NDArray[np.float32],
    colormap: str,
    alpha: float,
    out: npt.NDArray[np.uint8] | None = None,
) -> npt.NDArray[np.uint8]:
    """uint8 (N, H, W, 3) and float32 (N, h, w) -> uint8 (N, H, W, 3), written into `out` when
    given (a separate array, or `images` itself for in-place)."""

def channel_grid_f32(
    acts: npt.NDArray[np.float32], ncols: int, pad: int, scale: int, pad_value: float = 0.0
) -> npt.NDArray[np.float32]:
    """float32 (C, h, w) -> float32 (Hm, Wm) standardised display values in [0, 255]."""

def channel_grid_rgb(
    acts: npt.NDArray[np.float32],
    ncols: int,
    pad: int,
    scale: int,
    colormap: str,
    pad_color: tuple[int, int, int] = (255, 255, 255),
) -> npt.NDArray[np.uint8]:
    """float32 (C, h, w) -> uint8 (Hm, Wm, 3)."""

def filter_grid(
    weights: npt.NDArray[np.float32],
    ncols: int,
    pad: int,
    scale: int,
    pad_color: tuple[int, int, int] = (255, 255, 255),
) -> npt.NDArray[np.uint8]:
    """float32 (O, I, kh, kw), I in {1, 3} -> uint8 (Hm, Wm, 3)."""

# --- top-k (csrc/bind_topk.cpp) ----------------------------------------------------------------

class TopK:
    """Per-channel streaming top-k ordered by (value desc, id asc, payload asc); NaN ignored.

    Unfilled slots hold value NaN, id -1 and payload -1. Picklable (via serialise()).
    """

    def __init__(self, channels: int, k: int, payload_size: int = 0) -> None: ...
    @property
    def channels(self) -> int: ...
    @property
    def k(self) -> int: ...
    @property
    def payload_size(self) -> int: ...
    def update(
        self,
        values: npt.NDArray[np.float32],
        ids: npt.NDArray[np.int64],
        payload: npt.NDArray[np.int32] | None = None,
    ) -> None:
        """values (N, C), ids (N,), payload (N, C, P) (required iff payload_size > 0)."""

    def merge(self, other: TopK) -> None:
        """Exact merge; ValueError if (channels, k, payload_size) differ."""

    def serialise(self) -> bytes: ...
    @staticmethod
    def deserialise(data: bytes) -> TopK:
        """ValueError on wrong magic, version, byte order, size, checksum or order."""

    def values(self) -> npt.NDArray[np.float32]:
        """(C, k) copy."""

    def ids(self) -> npt.NDArray[np.int64]:
        """(C, k) copy."""

    def payload(self) -> npt.NDArray[np.int32]:
        """(C, k, P) copy."""

    def counts(self) -> npt.NDArray[np.int64]:
        """(C,) filled slots per channel."""

# --- synthesis (csrc/bind_synthesis.cpp) ------------------------------------------------------

def warp_affine(
    x: npt.NDArray[np.float32], theta: npt.NDArray[np.float64]
) -> npt.NDArray[np.float32]:
    """float32 (N, C, H, W), float64 (N, 2, 2) -> (N, C, H, W): bilinear, src = centre +
    theta[i] @ (dst - centre) in (y, x) order, zero outside the plane."""

def warp_affine_adjoint(
    g: npt.NDArray[np.float32], theta: npt.NDArray[np.float64]
) -> npt.NDArray[np.float32]:
    """The exact transpose of warp_affine (bilinear weights scattered back)."""

def warp_window(
    x: npt.NDArray[np.float32],
    theta: npt.NDArray[np.float64],
    plane: tuple[int, int],
    pre: npt.NDArray[np.int64],
    post: npt.NDArray[np.int64],
    out_size: tuple[int, int],
    fill: float,
) -> npt.NDArray[np.float32]:
    """Pads/crops, an affine warp and a crop in one pass: (N, C, H, W) -> (N, C, *out_size).
    Plane pixel t of image i shows x[i] at t + pre[i] (`fill` off the source); the plane is
    warped about its centre by theta[i] (zero off the plane); out = the warped plane at offset
    post[i]."""

def warp_window_adjoint(
    g: npt.NDArray[np.float32],
    theta: npt.NDArray[np.float64],
    plane: tuple[int, int],
    pre: npt.NDArray[np.int64],
    post: npt.NDArray[np.int64],
    size: tuple[int, int],
    fill: float,
) -> npt.NDArray[np.float32]:
    """The transpose of warp_window: (N, C, *out_size) gradients -> (N, C, *size), `size` the
    source's (H, W); the fill gets no gradient."""

def flush_denormals(on: bool) -> bool:
    """Set (True) or clear (False) flush-to-zero and denormals-are-zero on the calling thread;
    returns whether both were set before. A no-op returning False off x86."""

HAS_DENORMAL_CONTROL: bool
