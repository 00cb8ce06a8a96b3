"""ReduceSum/Mean/Max/Min/L2/SumSquare: axes as attribute (old opsets) and input, keepdims."""

from __future__ import annotations

import numpy as np
import pytest
from vjp_helpers import check_vjp, op_model

OPS = ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceL2", "ReduceSumSquare"]


def _distinct(shape, seed=0):
    rng = np.random.default_rng(seed)
    return rng.permutation(np.prod(shape)).reshape(shape).astype(np.float64) / np.prod(shape) + 0.1


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("axes", [None, [1], [-1, 2], [0, 2]])
@pytest.mark.parametrize("keepdims", [0, 1])
def test_reduce_attr_form(op, axes, keepdims):
    attrs = {"keepdims": keepdims}
    if axes is not None:
        attrs["axes"] = axes
    m = op_model(op, {"x": ["N", 3, 4, 5]}, attrs, opset=11)
    check_vjp(m, {"x": _distinct((2, 3, 4, 5))}, eps=1e-7)


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("axes", [None, [1], [-1, 2]])
@pytest.mark.parametrize("keepdims", [0, 1])
def test_reduce_input_form(op, axes, keepdims):
    consts = {} if axes is None else {"axes": np.array(axes, np.int64)}
    m = op_model(op, {"x": ["N", 3, 4, 5]}, {"keepdims": keepdims}, consts, opset=18)
    check_vjp(m, {"x": _distinct((2, 3, 4, 5), 1)}, eps=1e-7)


def test_reduce_noop_empty_axes():
    m = op_model("ReduceSum", {"x": ["N", 3]}, {"noop_with_empty_axes": 1}, opset=13)
    check_vjp(m, {"x": _distinct((2, 3))})


def test_reduce_max_ties_share():
    """torch.amax semantics: tied maxima share the gradient equally."""
    from vjp_helpers import session

    from onnxlens.autodiff import build_vjp

    m = op_model("ReduceMax", {"x": ["N", 4]}, {"axes": [1], "keepdims": 0}, opset=13)
    vg = build_vjp(m, ["y0"], ["x"])
    (g,) = session(vg.proto).run(
        None, {"x": np.array([[1.0, 3.0, 3.0, 0.0]]), vg.seed_inputs["y0"]: np.array([1.0])}
    )[-1:]
    np.testing.assert_allclose(g, [[0, 0.5, 0.5, 0]])
