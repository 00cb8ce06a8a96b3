"""Transformation robustness: random pad, jitter, scale and rotation applied at every step.

Each transform is sampled afresh per step from a seeded generator (one draw per batch row), is
linear in the image, and has its exact adjoint, so the optimiser gets the true gradient of the
objective of the transformed image. lucid's standard chain is
``pad(12) -> jitter(8) -> scale(1 +- 0.05...) -> rotate(-10..10 degrees) -> jitter(4)``.

Images are (N, C, H, W) float32; a transform may change H and W (pad grows them, the affine
warps keep them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .. import _core
from ..errors import ConfigurationError


class Transform:
    """A random linear map of images; `sample` draws the parameters used by the next
    forward/backward pair."""

    def sample(self, rng: np.random.Generator, n: int) -> None:
        """Draw this step's parameters for a batch of `n` images."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def backward(self, g: np.ndarray) -> np.ndarray:
        raise NotImplementedError


@dataclass
class Pad(Transform):
    """Pad each side by `width` pixels with a constant (lucid pads with 0.5 grey, "constant")."""

    width: int
    value: float = 0.5

    def forward(self, x: np.ndarray) -> np.ndarray:
        p = self.width
        return np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=self.value)

    def backward(self, g: np.ndarray) -> np.ndarray:
        p = self.width
        return g[:, :, p : g.shape[2] - p, p : g.shape[3] - p] if p else g


@dataclass
class Jitter(Transform):
    """A random crop that drops `d` pixels in total along each spatial axis (lucid's jitter:
    offsets 0..d per axis and image, the output `d` pixels smaller)."""

    d: int

    def __post_init__(self) -> None:
        if self.d < 0:
            raise ConfigurationError(f"jitter must be >= 0 pixels, got {self.d}.")
        self._offsets: np.ndarray = np.zeros((0, 2), np.int64)
        self._shape: tuple[int, ...] = ()

    def sample(self, rng: np.random.Generator, n: int) -> None:
        self._offsets = rng.integers(0, self.d + 1, size=(n, 2))

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._shape = x.shape
        h, w = x.shape[2] - self.d, x.shape[3] - self.d
        out = np.empty((*x.shape[:2], h, w), np.float32)
        for i, (oy, ox) in enumerate(self._offsets):
            out[i] = x[i, :, oy : oy + h, ox : ox + w]
        return out

    def backward(self, g: np.ndarray) -> np.ndarray:
        out = np.zeros(self._shape, np.float32)
        h, w = g.shape[2], g.shape[3]
        for i, (oy, ox) in enumerate(self._offsets):
            out[i, :, oy : oy + h, ox : ox + w] = g[i]
        return out


@dataclass
class Fit(Transform):
    """Centre-crop (or pad with `value`) to `size` (H, W): ends a chain whose pads and jitters
    changed the size, so the model sees its own input size."""

    size: tuple[int, int]
    value: float = 0.5

    def __post_init__(self) -> None:
        self._shape: tuple[int, ...] = ()

    def _box(self, h: int, w: int) -> tuple[int, int, int, int]:
        th, tw = self.size
        return (h - th) // 2, (w - tw) // 2, th, tw

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._shape = x.shape
        h, w = x.shape[2:]
        oy, ox, th, tw = self._box(h, w)
        if oy < 0 or ox < 0:  # grow: pad, then crop what overshoots on one side
            py, px = max(0, -oy), max(0, -ox)
            x = np.pad(x, ((0, 0), (0, 0), (py, py + 1), (px, px + 1)), constant_values=self.value)
            oy, ox = oy + py, ox + px
        return np.ascontiguousarray(x[:, :, oy : oy + th, ox : ox + tw])

    def backward(self, g: np.ndarray) -> np.ndarray:
        h, w = self._shape[2:]
        oy, ox, th, tw = self._box(h, w)
        out = np.zeros(self._shape, np.float32)
        ys, xs = max(0, oy), max(0, ox)  # where the kept window sits in the input
        gy, gx = max(0, -oy), max(0, -ox)  # and in the output
        hh, ww = min(h - ys, th - gy), min(w - xs, tw - gx)
        out[:, :, ys : ys + hh, xs : xs + ww] = g[:, :, gy : gy + hh, gx : gx + ww]
        return out


class Affine(Transform):
    """A random scale and/or rotation about the image centre, bilinear sampling with zero
    padding outside the image (the size is kept). `backward` is the exact transpose of the
    sampling: each output pixel's four bilinear weights scattered back (both in C++,
    `_core.warp_affine` and `_core.warp_affine_adjoint`)."""

    def __init__(self, scales: Sequence[float] = (1.0,), angles: Sequence[float] = (0.0,)) -> None:
        self.scales = np.asarray(scales, np.float64)
        self.angles = np.asarray(angles, np.float64)
        self.theta: np.ndarray = np.zeros((0, 2, 2))

    def sample(self, rng: np.random.Generator, n: int) -> None:
        s = rng.choice(self.scales, size=n)
        a = np.deg2rad(rng.choice(self.angles, size=n))
        # inverse map (output -> input offsets from the centre, (y, x)): rotate by -a, scale 1/s
        cos, sin = np.cos(a) / s, np.sin(a) / s
        self.theta = np.ascontiguousarray(
            np.stack([np.stack([cos, sin], 1), np.stack([-sin, cos], 1)], 1), np.float64
        )

    def forward(self, x: np.ndarray) -> np.ndarray:
        return _core.warp_affine(np.ascontiguousarray(x, np.float32), self.theta)

    def backward(self, g: np.ndarray) -> np.ndarray:
        return _core.warp_affine_adjoint(np.ascontiguousarray(g, np.float32), self.theta)


def scale(scales: Sequence[float]) -> Affine:
    """Random scaling by one of `scales` per image and step."""
    return Affine(scales=scales)


def rotate(angles: Sequence[float]) -> Affine:
    """Random rotation by one of `angles` (degrees) per image and step."""
    return Affine(angles=angles)


def standard_transforms() -> list[Transform]:
    """lucid's `transform.standard_transforms`: pad 12, jitter 8, scale 0.95-1.05, rotate
    -10..10 degrees, jitter 4 (the rotation and scale sampled together, one warp)."""
    return [
        Pad(12),
        Jitter(8),
        Affine(
            scales=[1 + (i - 5) / 50.0 for i in range(11)],
            angles=list(range(-10, 11)),
        ),
        Jitter(4),
    ]


class Chain:
    """Transforms applied in order, sampled together, with the adjoint applied in reverse.

    A chain of integer pads and crops (Pad, Jitter, Fit) around at most one Affine, with one
    fill value for its pads (lucid's standard chain is one), runs as one C++ pass each way
    (`_core.warp_window`): the same values as the transforms one by one, without their
    intermediate images. `fuse=False` runs them one by one.
    """

    def __init__(self, transforms: Sequence[Transform], fuse: bool = True) -> None:
        self.transforms = list(transforms)
        self.fuse = fuse
        self._fusable = fuse and _fusable(self.transforms)
        self._window: _Window | None = None

    def sample(self, rng: np.random.Generator, n: int) -> None:
        for t in self.transforms:
            t.sample(rng, n)

    def forward(self, x: np.ndarray) -> np.ndarray:
        self._window = w = _Window.of(self.transforms, x.shape) if self._fusable else None
        if w is not None:
            return _core.warp_window(
                np.ascontiguousarray(x, np.float32), w.theta, w.plane, w.pre, w.post, w.out, w.fill
            )
        for t in self.transforms:
            x = t.forward(x)
        return x

    def backward(self, g: np.ndarray) -> np.ndarray:
        w = self._window
        if w is not None:
            return _core.warp_window_adjoint(
                np.ascontiguousarray(g, np.float32), w.theta, w.plane, w.pre, w.post, w.source,
                w.fill,
            )  # fmt: skip
        for t in reversed(self.transforms):
            g = t.backward(g)
        return g

    def output_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """The (H, W) the chain makes of `size` (pads grow, jitters shrink, a Fit sets it)."""
        h, w = size
        for t in self.transforms:
            if isinstance(t, Pad):
                h, w = h + 2 * t.width, w + 2 * t.width
            elif isinstance(t, Jitter):
                h, w = h - t.d, w - t.d
            elif isinstance(t, Fit):
                h, w = t.size
        if h < 1 or w < 1:
            raise ConfigurationError(f"the transforms shrink a {size} image to nothing ({h}x{w}).")
        return h, w

    def fitted(self, size: tuple[int, int]) -> Chain:
        """This chain, ending with a Fit back to `size` when it changes the size of `size`."""
        if self.output_size(size) == tuple(size):
            return self
        return Chain(
            [*self.transforms, Fit(tuple(size))],  # type: ignore[arg-type]
            fuse=self.fuse,
        )


def _warp_index(transforms: Sequence[Transform]) -> int:
    """Where the (first) Affine stands, or len(transforms) without one."""
    kinds = [type(t) for t in transforms]
    return kinds.index(Affine) if Affine in kinds else len(kinds)


def _fill_values(transforms: Sequence[Transform]) -> set[float]:
    """The fill values of the pads and Fits before the warp (after it, a Fit may only crop)."""
    return {
        float(t.value) for t in transforms[: _warp_index(transforms)] if isinstance(t, Pad | Fit)
    }


def _fusable(transforms: Sequence[Transform]) -> bool:
    """Whether `transforms` is [Pad | Jitter | Fit]* [Affine]? [Jitter | Fit]* with one fill
    value before the warp (exact types only: a subclass may change what a step does)."""
    kinds = [type(t) for t in transforms]
    if any(k not in (Pad, Jitter, Fit, Affine) for k in kinds) or kinds.count(Affine) > 1:
        return False
    if any(k is Pad for k in kinds[_warp_index(transforms) :]):
        return False  # pads after the warp: their fill would meet the warp's zeros
    return len(_fill_values(transforms)) <= 1


@dataclass
class _Window:
    """One step's fused geometry (see `_core.warp_window`)."""

    theta: np.ndarray
    pre: np.ndarray
    post: np.ndarray
    plane: tuple[int, int]
    out: tuple[int, int]
    source: tuple[int, int]
    fill: float

    @staticmethod
    def of(transforms: Sequence[Transform], shape: tuple[int, ...]) -> _Window | None:
        """The geometry for images of `shape` with the transforms' sampled parameters; a Fit
        after the warp that would grow the image breaks the fusion (None)."""
        n = shape[0]
        h, w = int(shape[2]), int(shape[3])
        source = (h, w)
        offset = np.zeros((n, 2), np.int64)  # plane pixel -> source pixel, pre-warp
        post = np.zeros((n, 2), np.int64)
        theta = np.broadcast_to(np.eye(2), (n, 2, 2))
        plane: tuple[int, int] | None = None
        for t in transforms:
            into = offset if plane is None else post
            if isinstance(t, Pad):
                into -= t.width
                h, w = h + 2 * t.width, w + 2 * t.width
            elif isinstance(t, Jitter):
                into += t._offsets[:n]
                h, w = h - t.d, w - t.d
            elif isinstance(t, Fit):
                oy, ox, th, tw = t._box(h, w)
                if plane is not None and (oy < 0 or ox < 0):
                    return None  # grows after the warp: its fill would meet the warp's zeros
                into += (oy, ox)
                h, w = th, tw
            elif isinstance(t, Affine):
                theta, plane = t.theta, (h, w)
        fill = next(iter(_fill_values(transforms)), 0.0)
        return _Window(
            theta=np.ascontiguousarray(theta, np.float64),
            pre=np.ascontiguousarray(offset),
            post=np.ascontiguousarray(post),
            plane=plane or (h, w),
            out=(h, w),
            source=source,
            fill=fill,
        )
