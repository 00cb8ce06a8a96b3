"""_core never casts: wrong dtype, rank or layout is refused with "expected X, got Y"."""

from __future__ import annotations

import numpy as np
import pytest

from onnxlens import _core

MAPS = np.zeros((2, 4, 6), np.float32)
IMAGES = np.zeros((2, 8, 8, 3), np.uint8)


@pytest.mark.parametrize(
    ("call", "exc", "pattern"),
    [
        (
            lambda: _core.resize_bilinear(MAPS.astype(np.float64), 5, 5),
            TypeError,
            r"maps: expected float32 C-contiguous array of shape \(N, h, w\), got float64 array of shape \(2, 4, 6\)",
        ),
        (lambda: _core.resize_bilinear(MAPS.astype(np.int32), 5, 5), TypeError, "got int32"),
        (
            lambda: _core.resize_bilinear(MAPS[:, :, ::2], 5, 5),
            ValueError,
            r"got a non-contiguous float32 array of shape \(2, 4, 3\)",
        ),
        (
            lambda: _core.resize_bilinear(MAPS[0], 5, 5),
            ValueError,
            r"got float32 array of shape \(4, 6\)",
        ),
        (lambda: _core.resize_bilinear(MAPS.tolist(), 5, 5), TypeError, "got list"),
        (lambda: _core.resize_bilinear(MAPS.astype(">f4"), 5, 5), TypeError, "got >f4"),
        (lambda: _core.resize_bilinear(MAPS, 0, 5), ValueError, "height must be >= 1"),
        (
            lambda: _core.overlay(IMAGES.astype(np.float32), MAPS, "jet", 0.5),
            TypeError,
            r"images: expected uint8 C-contiguous array of shape \(N, H, W, 3\), got float32",
        ),
        (
            lambda: _core.overlay(IMAGES, MAPS.astype(np.float64), "jet", 0.5),
            TypeError,
            "maps: expected float32",
        ),
        (
            lambda: _core.overlay(IMAGES[:, ::2], MAPS, "jet", 0.5),
            ValueError,
            "non-contiguous uint8",
        ),
        (lambda: _core.overlay(IMAGES[:1], MAPS, "jet", 0.5), ValueError, "differ in batch size"),
        (lambda: _core.overlay(IMAGES, MAPS, "nope", 0.5), ValueError, "unknown colormap 'nope'"),
        (lambda: _core.overlay(IMAGES, MAPS, "jet", 2.0), ValueError, r"alpha must be in \[0, 1\]"),
        (lambda: _core.apply_colormap(MAPS.astype(np.float16), "jet"), TypeError, "got float16"),
        (lambda: _core.channel_grid_rgb(MAPS.T, 2, 1, 1, "jet"), ValueError, "non-contiguous"),
        (lambda: _core.channel_grid_f32(MAPS, 0, 1, 1), ValueError, "ncols must be >= 1"),
        (
            lambda: _core.filter_grid(np.zeros((2, 2, 3, 3), np.float32), 2, 1, 1),
            ValueError,
            "I in {1, 3}",
        ),
    ],
)
def test_render_refuses(call, exc: type[Exception], pattern: str) -> None:
    with pytest.raises(exc, match=pattern):
        call()


def test_topk_refuses() -> None:
    t = _core.TopK(4, 2)
    v = np.zeros((3, 4), np.float32)
    i = np.arange(3, dtype=np.int64)
    with pytest.raises(TypeError, match=r"values: expected float32 .* got float64"):
        t.update(v.astype(np.float64), i)
    with pytest.raises(TypeError, match=r"ids: expected int64 .* got int32"):
        t.update(v, i.astype(np.int32))
    with pytest.raises(ValueError, match="non-contiguous"):
        t.update(np.zeros((3, 8), np.float32)[:, ::2], i)
    with pytest.raises(ValueError, match=r"expected shape \(N, 4\) for this TopK, got \(3, 5\)"):
        t.update(np.zeros((3, 5), np.float32), i)
    with pytest.raises(ValueError, match=r"ids: expected shape \(3,\)"):
        t.update(v, i[:2])
    assert t.counts().tolist() == [0, 0, 0, 0]  # nothing was half-applied


def test_outputs_are_fresh_arrays() -> None:
    out = _core.resize_bilinear(MAPS, 3, 3)
    assert out.flags.c_contiguous and out.flags.writeable and out.flags.owndata
