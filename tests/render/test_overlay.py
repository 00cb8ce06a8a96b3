from __future__ import annotations

import cv2
import matplotlib
import numpy as np
import pytest

from onnxlens.errors import ConfigurationError, ShapeError
from onnxlens.render import overlay


def table(name: str) -> np.ndarray:
    rgba = matplotlib.colormaps[name](np.linspace(0.0, 1.0, 256))
    return np.round(rgba[:, :3] * 255.0).astype(np.uint8)


def reference_indices(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """cv2.resize, then per-map min-max to a colour index (NaN -> the map's min)."""
    h, w = size
    out = []
    for m in maps:
        m = np.where(np.isfinite(m), m, np.nanmin(m) if np.isfinite(m).any() else 0).astype(
            np.float32
        )
        up = cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR)
        lo, hi = up.min(), up.max()
        if m.min() == m.max():
            # exactly constant in exact arithmetic; IPP's resize adds ~1e-8 noise that the
            # min-max would blow up to full range
            hi = lo
        scale = np.float32(255) / (hi - lo) if hi > lo else np.float32(0)
        t = np.clip((up - lo) * scale + np.float32(0.5), 0, 255)
        out.append(np.floor(t).astype(np.int64))
    return np.stack(out)


def blend(images: np.ndarray, idx: np.ndarray, name: str, alpha: float) -> np.ndarray:
    colour = table(name)[np.clip(idx, 0, 255)].astype(np.float32)
    a = np.float32(alpha)
    return np.floor((1 - a) * images.astype(np.float32) + a * colour + np.float32(0.5))


def assert_matches_reference(
    out: np.ndarray, images: np.ndarray, maps: np.ndarray, name: str, alpha: float
) -> None:
    """Exact (within 1 LSB) against the reference, except where OpenCV's resize (IPP, FMA)
    differs from ours by float rounding right at a colour-index boundary: there the pixel must
    equal the blend of the neighbouring index, and such pixels must be rare."""
    idx = reference_indices(maps, images.shape[1:3])
    diffs = [np.abs(out.astype(np.int64) - blend(images, idx + d, name, alpha)) for d in (0, -1, 1)]
    exact = diffs[0].max(axis=-1) <= 1
    neighbour = np.minimum(diffs[1], diffs[2]).max(axis=-1) <= 1
    assert np.all(exact | neighbour)
    assert np.mean(~exact) < 1e-3


@pytest.mark.parametrize("n", [1, 257])
@pytest.mark.parametrize("name", ["jet", "viridis"])
def test_matches_numpy_opencv_reference(n: int, name: str) -> None:
    rng = np.random.default_rng(n)
    images = rng.integers(0, 256, (n, 31, 45, 3), dtype=np.uint8)
    maps = rng.standard_normal((n, 7, 7)).astype(np.float32)
    out = overlay(images, maps, colormap=name, alpha=0.4)
    assert out.dtype == np.uint8 and out.shape == (n, 31, 45, 3)
    assert_matches_reference(out, images, maps, name, 0.4)


@pytest.mark.parametrize(
    ("src", "dst"), [((7, 7), (224, 224)), ((5, 3), (17, 29)), ((13, 13), (6, 6)), ((1, 1), (3, 5))]
)
def test_odd_sizes(src: tuple[int, int], dst: tuple[int, int]) -> None:
    rng = np.random.default_rng(7)
    images = rng.integers(0, 256, (3, *dst, 3), dtype=np.uint8)
    maps = rng.random((3, *src), dtype=np.float32)
    out = overlay(images, maps, "turbo", 0.5)
    assert_matches_reference(out, images, maps, "turbo", 0.5)


def test_constant_map_is_index_zero_without_nan() -> None:
    images = np.full((2, 9, 8, 3), 100, np.uint8)
    maps = np.stack([np.full((4, 4), 3.5, np.float32), np.zeros((4, 4), np.float32)])
    out = overlay(images, maps, "jet", 0.5)
    expected = np.floor(0.5 * 100 + 0.5 * table("jet")[0].astype(np.float32) + 0.5)
    np.testing.assert_array_equal(out, np.broadcast_to(expected, out.shape))


def test_nan_values_count_as_minimum() -> None:
    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, (3, 20, 20, 3), dtype=np.uint8)
    maps = rng.random((3, 6, 6), dtype=np.float32)
    maps[0, 2, 3] = np.nan
    maps[1, :, :] = np.nan  # all NaN -> constant -> index 0
    maps[2, 0, :] = np.inf
    out = overlay(images, maps, "jet", 0.6)
    assert_matches_reference(out, images, maps, "jet", 0.6)
    expected = blend(images[1:2], np.zeros((1, 20, 20), np.int64), "jet", 0.6)
    np.testing.assert_array_equal(out[1:2], expected)


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_alpha_extremes(alpha: float) -> None:
    rng = np.random.default_rng(6)
    images = rng.integers(0, 256, (2, 10, 12, 3), dtype=np.uint8)
    maps = rng.random((2, 3, 3), dtype=np.float32)
    out = overlay(images, maps, "viridis", alpha)
    if alpha == 0.0:
        np.testing.assert_array_equal(out, images)
    else:
        idx = reference_indices(maps, (10, 12))
        np.testing.assert_array_equal(out, table("viridis")[idx])


def test_single_image_and_map_and_broadcast() -> None:
    rng = np.random.default_rng(8)
    image = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    maps = rng.random((4, 4, 4))  # float64, converted by the wrapper
    single = overlay(image, maps[0])
    assert single.shape == (1, 16, 16, 3)
    many = overlay(image, maps)
    assert many.shape == (4, 16, 16, 3)
    np.testing.assert_array_equal(many[0], single[0])
    np.testing.assert_array_equal(overlay(image, maps[:, None])[2], many[2])


def test_user_errors() -> None:
    img = np.zeros((2, 8, 8, 3), np.uint8)
    with pytest.raises(ShapeError, match="uint8 RGB"):
        overlay(img.astype(np.float32), np.zeros((2, 3, 3)))
    with pytest.raises(ShapeError, match=r"transpose\(0, 2, 3, 1\)"):
        overlay(np.zeros((2, 3, 8, 8), np.uint8), np.zeros((2, 3, 3)))
    with pytest.raises(ShapeError, match="2 images but 3 maps"):
        overlay(img, np.zeros((3, 3, 3)))
    with pytest.raises(ShapeError, match="maps of shape"):
        overlay(img, np.zeros((2, 2, 3, 3)))
    with pytest.raises(ConfigurationError, match="alpha"):
        overlay(img, np.zeros((2, 3, 3)), alpha=1.5)
    with pytest.raises(ConfigurationError, match="unknown colormap"):
        overlay(img, np.zeros((2, 3, 3)), colormap="nope")


def test_out_buffer_and_in_place() -> None:
    rng = np.random.default_rng(9)
    images = rng.integers(0, 256, (3, 13, 17, 3), dtype=np.uint8)
    maps = rng.random((3, 4, 5), dtype=np.float32)
    expected = overlay(images, maps, "magma", 0.3)
    buf = np.empty_like(images)
    assert overlay(images, maps, "magma", 0.3, out=buf) is buf
    np.testing.assert_array_equal(buf, expected)
    inplace = images.copy()
    overlay(inplace, maps, "magma", 0.3, out=inplace)
    np.testing.assert_array_equal(inplace, expected)
    with pytest.raises(ValueError, match="out: expected shape"):
        overlay(images, maps, out=np.empty((3, 13, 16, 3), np.uint8))
    with pytest.raises(ValueError, match="separate array or exactly"):
        big = np.zeros((4, 13, 17, 3), np.uint8)
        overlay(big[:3], maps, out=big[1:])  # overlapping but not identical: refused
