"""Softmax / LogSoftmax in every opset: pre-13 2-D coercion at `axis` and per-axis from 13."""

from __future__ import annotations

import numpy as np
import pytest
from vjp_helpers import check_vjp, op_model


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize(
    ("opset", "axis"),
    [(11, None), (11, 1), (11, 2), (11, -1), (11, 0), (13, None), (13, 1), (13, -2), (13, 0)],
)
def test_softmax(op, opset, axis):
    rng = np.random.default_rng(0)
    attrs = {} if axis is None else {"axis": axis}
    m = op_model(op, {"x": ["N", 3, 4, 5]}, attrs, opset=opset)
    check_vjp(m, {"x": rng.standard_normal((2, 3, 4, 5))})


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
def test_softmax_unknown_rank_opset11(op):
    """Input rank unknown to shape inference (a Reshape to a run-time shape, as in Paddle
    exports): the rule works on the 2-D coercion Flatten(axis) and reshapes back."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("Reshape", ["x", "s"], ["r"]),
        helper.make_node(op, ["r"], ["y"], axis=1),
    ]
    g = helper.make_graph(
        nodes,
        "t",
        [
            helper.make_tensor_value_info("x", TensorProto.DOUBLE, [2, 12]),
            helper.make_tensor_value_info("s", TensorProto.INT64, [3]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, [None, None, None])],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 11)], ir_version=10)
    onnx.checker.check_model(m)
    check_vjp(
        m,
        {
            "x": np.random.default_rng(1).standard_normal((2, 12)),
            "s": np.array([2, 3, 4], np.int64),
        },
        wrt=["x"],
    )
