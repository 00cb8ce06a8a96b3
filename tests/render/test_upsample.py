from __future__ import annotations

import cv2
import numpy as np
import pytest

from onnxlens.errors import ShapeError
from onnxlens.render import upsample

ATOL = 1e-5


def cv2_resize(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    h, w = size
    return np.stack([cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR) for m in maps])


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        ((7, 7), (224, 224)),
        ((5, 3), (17, 29)),
        ((1, 1), (9, 4)),
        ((13, 13), (6, 6)),  # downscale: still plain bilinear in OpenCV
        ((2, 2), (3, 3)),
        ((14, 14), (7, 7)),  # exact 2x: OpenCV switches to INTER_AREA, identical here
        ((3, 1), (5, 8)),
        ((8, 8), (8, 8)),
    ],
)
def test_matches_cv2_inter_linear(src: tuple[int, int], dst: tuple[int, int]) -> None:
    rng = np.random.default_rng(1)
    maps = rng.standard_normal((4, *src)).astype(np.float32) * 10
    out = upsample(maps, dst)
    assert out.dtype == np.float32 and out.shape == (4, *dst)
    np.testing.assert_allclose(out, cv2_resize(maps, dst), rtol=0, atol=ATOL * 10)


@pytest.mark.parametrize("n", [1, 257])
def test_batch_sizes(n: int) -> None:
    rng = np.random.default_rng(n)
    maps = rng.random((n, 7, 7), dtype=np.float32)
    out = upsample(maps, (31, 45))
    np.testing.assert_allclose(out, cv2_resize(maps, (31, 45)), rtol=0, atol=ATOL)


def test_constant_maps_stay_exactly_constant() -> None:
    maps = np.full((3, 5, 6), 0.37, np.float32)
    out = upsample(maps, (50, 23))
    assert np.all(out == np.float32(0.37))


def test_four_d_and_two_d_inputs() -> None:
    rng = np.random.default_rng(2)
    maps = rng.random((2, 3, 7, 5), dtype=np.float32)
    out = upsample(maps, (20, 11))
    assert out.shape == (2, 3, 20, 11)
    np.testing.assert_allclose(
        out.reshape(6, 20, 11), cv2_resize(maps.reshape(6, 7, 5), (20, 11)), rtol=0, atol=ATOL
    )
    single = upsample(maps[0, 0], (20, 11))
    assert single.shape == (20, 11)
    np.testing.assert_array_equal(single, out[0, 0])


def test_wrapper_converts_float64_and_views() -> None:
    rng = np.random.default_rng(3)
    maps = rng.random((4, 7, 14))
    view = maps[:, :, ::2]  # float64 and non-contiguous: the wrapper converts, _core would refuse
    out = upsample(view, (9, 9))
    ref = cv2_resize(np.ascontiguousarray(view, dtype=np.float32), (9, 9))
    np.testing.assert_allclose(out, ref, rtol=0, atol=ATOL)


@pytest.mark.parametrize("shape", [(5,), (1, 2, 3, 4, 5)])
def test_wrong_rank_is_shape_error(shape: tuple[int, ...]) -> None:
    with pytest.raises(ShapeError, match="upsample expects maps of shape"):
        upsample(np.zeros(shape, np.float32), (4, 4))


@pytest.mark.parametrize("size", [(0, 4), (4,), "ab"])
def test_bad_size_is_shape_error(size: object) -> None:
    with pytest.raises(ShapeError, match="size must be"):
        upsample(np.zeros((1, 3, 3), np.float32), size)  # type: ignore[arg-type]
