from __future__ import annotations

import math
import warnings

import matplotlib
import numpy as np
import pytest

from onnxlens.errors import ShapeError
from onnxlens.render import channel_grid, channel_grid_values, channel_stats, filter_grid


def table(name: str) -> np.ndarray:
    rgba = matplotlib.colormaps[name](np.linspace(0.0, 1.0, 256))
    return np.round(rgba[:, :3] * 255.0).astype(np.uint8)


def keras_standardise(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    sd = x.std()
    if sd == 0:
        return np.full(x.shape, 128.0)
    return np.clip((x - x.mean()) / sd * 64 + 128, 0, 255)


def tiles(mosaic: np.ndarray, count: int, h: int, w: int, ncols: int, pad: int, scale: int):
    th, tw = h * scale, w * scale
    for t in range(count):
        r, c = divmod(t, ncols)
        y0, x0 = pad + r * (th + pad), pad + c * (tw + pad)
        yield mosaic[y0 : y0 + th, x0 : x0 + tw][::scale, ::scale]


@pytest.mark.parametrize(
    ("c", "ncols", "pad", "scale"), [(10, 4, 1, 1), (7, 3, 2, 3), (1, 1, 0, 2)]
)
def test_values_match_keras_standardisation(c: int, ncols: int, pad: int, scale: int) -> None:
    rng = np.random.default_rng(c)
    acts = (rng.standard_normal((c, 5, 6)) * 3 + 1).astype(np.float32)
    acts[0] = np.maximum(acts[0], 0)  # ReLU-like, skewed
    mosaic = channel_grid_values(acts, ncols=ncols, pad=pad, scale=scale, pad_value=-1)
    nrows = math.ceil(c / ncols)
    assert mosaic.shape == (
        nrows * 5 * scale + (nrows + 1) * pad,
        ncols * 6 * scale + (ncols + 1) * pad,
    )
    for got, x in zip(tiles(mosaic, c, 5, 6, ncols, pad, scale), acts, strict=True):
        np.testing.assert_allclose(got, keras_standardise(x), rtol=0, atol=1e-3)
    # borders keep pad_value; nearest upscale repeats each pixel scale x scale
    if pad:
        assert np.all(mosaic[:pad] == -1) and np.all(mosaic[:, :pad] == -1)
    first = mosaic[pad : pad + 5 * scale, pad : pad + 6 * scale]
    np.testing.assert_array_equal(first, np.kron(first[::scale, ::scale], np.ones((scale, scale))))


def test_constant_and_nan_channels_are_flat_without_warnings() -> None:
    acts = np.random.default_rng(0).standard_normal((4, 7, 7)).astype(np.float32)
    acts[1] = 0.0
    acts[2] = 0.1  # constant but not representable: still exactly std 0
    acts[3] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        values = channel_grid_values(acts, ncols=4, pad=1, scale=1)
        rgb = channel_grid(acts, ncols=4, pad=1, scale=1, colormap="viridis")
    assert not np.isnan(values).any()
    for t, tile in enumerate(tiles(values, 4, 7, 7, 4, 1, 1)):
        if t > 0:
            assert np.all(tile == 128.0)
    for t, tile in enumerate(tiles(rgb, 4, 7, 7, 4, 1, 1)):
        if t > 0:
            assert np.all(tile == table("viridis")[128])


@pytest.mark.parametrize("cmap", ["viridis", None])
def test_rgb_is_colormap_of_values(cmap: str | None) -> None:
    rng = np.random.default_rng(3)
    acts = rng.standard_normal((6, 4, 4)).astype(np.float32)
    values = channel_grid_values(acts, ncols=3, pad=2, scale=2)
    rgb = channel_grid(acts, ncols=3, pad=2, scale=2, colormap=cmap, pad_color=(1, 2, 3))
    inside = np.zeros(values.shape, bool)
    for r in range(2):
        for c in range(3):
            inside[2 + r * 10 : 2 + r * 10 + 8, 2 + c * 10 : 2 + c * 10 + 8] = True
    idx = np.floor(values + np.float32(0.5)).astype(np.int64)
    np.testing.assert_array_equal(rgb[inside], table(cmap or "gray")[idx[inside]])
    assert np.all(rgb[~inside] == (1, 2, 3))


def test_default_layout_and_batch_of_one() -> None:
    acts = np.random.default_rng(4).random((10, 7, 7), dtype=np.float32)
    rgb = channel_grid(acts[None])  # (1, C, h, w) accepted
    # ncols = ceil(sqrt(10)) = 4, 3 rows; scale = ceil(32 / 7) = 5 -> 35 px tiles
    assert rgb.shape == (3 * 35 + 4, 4 * 35 + 5, 3)
    with pytest.raises(ShapeError, match=r"acts\[i\]"):
        channel_grid(np.zeros((2, 10, 7, 7), np.float32))


def test_filter_grid_rgb_minmax() -> None:
    rng = np.random.default_rng(5)
    w = rng.standard_normal((5, 3, 3, 3)).astype(np.float32)
    w[4] = 0.25  # constant filter -> flat 128
    out = filter_grid(w, ncols=5, pad=1, scale=4, pad_color=(0, 0, 0))
    assert out.shape == (3 * 4 + 2, 5 * 3 * 4 + 6, 3)
    for o in range(5):
        tile = out[1 : 1 + 12, 1 + o * 13 : 1 + o * 13 + 12]
        if o == 4:
            assert np.all(tile == 128)
            continue
        f = w[o]
        ref = np.floor((f - f.min()) * (np.float32(255) / (f.max() - f.min())) + np.float32(0.5))
        ref = np.transpose(ref, (1, 2, 0)).astype(np.uint8)
        np.testing.assert_array_equal(tile, np.repeat(np.repeat(ref, 4, 0), 4, 1))


def test_filter_grid_other_input_channels() -> None:
    rng = np.random.default_rng(6)
    w = rng.standard_normal((4, 8, 3, 3)).astype(np.float32)
    mean = filter_grid(w, ncols=4, pad=0, scale=1)
    ref = filter_grid(w.mean(axis=1, keepdims=True), ncols=4, pad=0, scale=1)
    np.testing.assert_array_equal(mean, ref)
    assert np.all(mean[..., 0] == mean[..., 1])  # grey
    per = filter_grid(w, pad=0, scale=1, per_channel=True)
    assert per.shape == (4 * 3, 8 * 3, 3)  # one row of I tiles per filter
    with pytest.raises(ShapeError, match="transpose"):
        filter_grid(np.zeros((3, 3, 8), np.float32))


def test_channel_stats() -> None:
    rng = np.random.default_rng(7)
    acts = np.maximum(rng.standard_normal((6, 5, 4, 4)), 0).astype(np.float32)
    acts[:, 1] = 0.0  # dead channel
    acts[:, 3] = 2.0  # constant but non-zero: blank too
    acts[0, 4, 0, 0] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stats = channel_stats(acts)
    assert stats["channels"] == 5
    assert stats["blank_channels"] == 2 and stats["blank_channel_indices"] == [1, 3]
    assert stats["sparsity"] == pytest.approx(np.mean(acts == 0))
    assert stats["nonpositive"] == pytest.approx(np.mean(acts <= 0))
    np.testing.assert_allclose(stats["channel_sparsity"], (acts == 0).mean(axis=(0, 2, 3)))
    assert stats["channel_sparsity"][1] == 1.0
    all_nan = channel_stats(np.full((2, 3), np.nan, np.float32))
    assert all_nan["blank_channels"] == 3 and all_nan["sparsity"] == 0.0
