"""MaxPool / AveragePool / global pools, including overlapping windows, ceil_mode, pads, ties."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto
from vjp_helpers import check_vjp, op_model, session

from onnxlens.autodiff import build_vjp

MAX_CASES = [
    ((2, 2), {"strides": [2, 2]}),
    ((2, 2), {"strides": [2, 2], "ceil_mode": 1}),
    ((3, 3), {"strides": [3, 3], "pads": [1, 1, 1, 1]}),
    ((3, 3), {"strides": [2, 2]}),
    ((3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ((3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": 1}),
    ((3, 3), {"strides": [1, 1], "pads": [1, 1, 1, 1]}),
    ((2, 3), {"strides": [1, 2], "dilations": [2, 1]}),
    ((3, 3), {"strides": [2, 2], "auto_pad": "SAME_UPPER"}),
]


def _distinct(shape, seed):
    """Inputs without ties, so central differences are well defined."""
    rng = np.random.default_rng(seed)
    return rng.permutation(np.prod(shape)).reshape(shape).astype(np.float64) / np.prod(shape)


@pytest.mark.parametrize(
    ("kernel", "attrs"), MAX_CASES, ids=[str(i) for i in range(len(MAX_CASES))]
)
def test_max_pool(kernel, attrs):
    m = op_model("MaxPool", {"x": ["N", 3, 9, 10]}, {"kernel_shape": list(kernel), **attrs})
    check_vjp(m, {"x": _distinct((2, 3, 9, 10), 0)}, eps=1e-7)


def test_max_pool_non_overlapping_has_no_reduction():
    m = op_model("MaxPool", {"x": ["N", 3, 8, 8]}, {"kernel_shape": [2, 2], "strides": [2, 2]})
    vg = build_vjp(m, ["y0"], ["x"])
    scatters = [n for n in vg.proto.graph.node if n.op_type == "ScatterElements"]
    assert len(scatters) == 1 and not any(a.name == "reduction" for a in scatters[0].attribute)


def test_max_pool_ties_one_winner():
    """Constant input: every window is a tie; the gradient goes to exactly one element per window."""
    m = op_model("MaxPool", {"x": ["N", 1, 6, 6]}, {"kernel_shape": [3, 3], "strides": [3, 3]})
    vg = build_vjp(m, ["y0"], ["x"])
    sess = session(vg.proto)
    (g,) = sess.run(
        [vg.grad_outputs["x"]],
        {"x": np.zeros((1, 1, 6, 6)), vg.seed_inputs["y0"]: np.ones((1, 1, 2, 2))},
    )
    assert g.sum() == 4 and np.count_nonzero(g) == 4
    assert g[0, 0, 0, 0] == 1  # the first element of the window, as PyTorch


def test_max_pool_overlapping_before_opset16_equals_opset16():
    """Before ScatterElements can add (opset 16) overlapping windows take the one-hot-taps form
    (tests/autodiff/test_opsets.py checks it against finite differences and torch)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 1, 6, 6))
    c = rng.standard_normal((2, 1, 2, 2))
    grads = []
    for opset in (13, 16):
        m = op_model(
            "MaxPool",
            {"x": ["N", 1, 6, 6]},
            {"kernel_shape": [3, 3], "strides": [2, 2]},
            opset=opset,
            dtype=F32,
        )
        vg = build_vjp(m, ["y0"], ["x"])
        (g,) = session(vg.proto).run(
            [vg.grad_outputs["x"]],
            {"x": x.astype(np.float32), vg.seed_inputs["y0"]: c.astype(np.float32)},
        )
        grads.append(g)
    np.testing.assert_array_equal(grads[0], grads[1])


AVG_CASES = [
    ((2, 2), {"strides": [2, 2]}),
    ((3, 3), {"strides": [2, 2]}),
    ((3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1]}),
    ((3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1], "count_include_pad": 1}),
    ((3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": 1}),
    ((3, 3), {"strides": [2, 2], "pads": [1, 0, 1, 0], "ceil_mode": 1, "count_include_pad": 1}),
    ((3, 2), {"strides": [1, 1], "pads": [1, 0, 1, 1]}),
    ((2, 2), {"strides": [2, 2], "ceil_mode": 1}),
    ((3, 3), {"strides": [2, 2], "auto_pad": "SAME_UPPER"}),
]


@pytest.mark.parametrize(
    ("kernel", "attrs"), AVG_CASES, ids=[str(i) for i in range(len(AVG_CASES))]
)
def test_average_pool(kernel, attrs):
    m = op_model(
        "AveragePool",
        {"x": ["N", 3, 9, 10]},
        {"kernel_shape": list(kernel), **attrs},
        dtype=TensorProto.FLOAT,
        opset=19,
    )
    rng = np.random.default_rng(1)
    check_vjp(m, {"x": rng.standard_normal((2, 3, 9, 10)).astype(np.float32)}, eps=1.0, rtol=1e-4)


F32 = TensorProto.FLOAT  # ORT's global pools have float kernels only


@pytest.mark.parametrize("shape", [["N", 3, 5, 7], ["N", 3, "H", "W"]])
def test_global_average_pool(shape):
    m = op_model("GlobalAveragePool", {"x": shape}, dtype=F32)
    check_vjp(m, {"x": _distinct((2, 3, 5, 7), 2).astype(np.float32)}, eps=1.0, rtol=1e-4)


def test_global_max_pool():
    m = op_model("GlobalMaxPool", {"x": ["N", 3, 5, 7]}, dtype=F32)
    check_vjp(m, {"x": _distinct((2, 3, 5, 7), 3).astype(np.float32)}, eps=1e-3, rtol=1e-3)
    vg = build_vjp(m, ["y0"], ["x"])
    feeds = {
        "x": np.zeros((1, 3, 5, 7), np.float32),
        vg.seed_inputs["y0"]: np.ones((1, 3, 1, 1), np.float32),
    }
    (g,) = session(vg.proto).run([vg.grad_outputs["x"]], feeds)
    assert np.count_nonzero(g) == 3  # one winner per channel on ties
