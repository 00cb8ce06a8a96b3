"""Numerical checks of the elementwise rules with broadcasting (float64)."""

from __future__ import annotations

import numpy as np
import pytest
from vjp_helpers import check_vjp, op_model

SHAPES = [
    ((2, 3, 4, 5), (2, 3, 4, 5)),
    ((2, 3, 4, 5), (3, 1, 1)),
    ((2, 3, 4, 5), (5,)),
    ((2, 1, 4, 1), (1, 3, 1, 5)),
    ((2, 3, 4, 5), ()),
]


def _sym(shape):
    return ["N", *shape[1:]] if len(shape) == 4 else list(shape)


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div", "Pow"])
@pytest.mark.parametrize(("sa", "sb"), SHAPES)
def test_binary_broadcast(op, sa, sb):
    rng = np.random.default_rng(1)
    a = np.asarray(rng.uniform(0.5, 2.0, sa))
    b = np.asarray(rng.uniform(0.5, 2.0, sb))
    m = op_model(op, {"a": _sym(sa), "b": _sym(sb) if sb[:1] == sa[:1] else list(sb)})
    check_vjp(m, {"a": a, "b": b})


@pytest.mark.parametrize("op", ["Add", "Mul", "Div"])
def test_binary_constant_operand(op):
    """Only the non-constant operand gets a gradient; the weight is left alone."""
    rng = np.random.default_rng(2)
    m = op_model(op, {"a": ["N", 3, 4]}, consts={"w": rng.uniform(0.5, 2, (3, 1))})
    check_vjp(m, {"a": rng.uniform(0.5, 2, (2, 3, 4))})


@pytest.mark.parametrize(
    "op", ["Neg", "Sqrt", "Exp", "Log", "Reciprocal", "Erf", "Abs", "Sin", "Cos", "Identity"]
)
def test_unary(op):
    from onnx import TensorProto

    rng = np.random.default_rng(3)
    x = rng.uniform(0.3, 2.0, (4, 3, 5))
    if op == "Erf":  # ORT has float Erf only
        m = op_model(op, {"x": ["N", 3, 5]}, dtype=TensorProto.FLOAT)
        check_vjp(m, {"x": x.astype(np.float32)}, eps=1e-3, rtol=1e-3)
    else:
        check_vjp(op_model(op, {"x": ["N", 3, 5]}), {"x": x})


def test_pow_constant_exponent():
    rng = np.random.default_rng(4)
    for e in (2.0, 3.0, 0.5):
        m = op_model("Pow", {"x": ["N", 6]}, consts={"e": np.array(e)})
        check_vjp(m, {"x": rng.uniform(0.3, 2.0, (3, 6))})


@pytest.mark.parametrize("op", ["Sum", "Mean", "Max", "Min"])
def test_variadic(op):
    from onnx import TensorProto

    rng = np.random.default_rng(5)
    feeds = {
        "a": rng.standard_normal((2, 3, 4)),
        "b": rng.standard_normal((1, 4)),
        "c": rng.standard_normal((2, 3, 4)),
    }
    if op == "Mean":  # float kernel only
        m = op_model(op, {"a": ["N", 3, 4], "b": [1, 4], "c": ["N", 3, 4]}, dtype=TensorProto.FLOAT)
        check_vjp(m, {k: v.astype(np.float32) for k, v in feeds.items()}, eps=1e-2, rtol=1e-4)
    else:
        check_vjp(op_model(op, {"a": ["N", 3, 4], "b": [1, 4], "c": ["N", 3, 4]}), feeds)


def test_where_broadcast():
    rng = np.random.default_rng(6)
    m = op_model(
        "Where",
        {"x": ["N", 3, 4], "y": [4]},
        consts={"c": rng.random((3, 4)) > 0.5},
        order=["c", "x", "y"],
    )
    check_vjp(m, {"x": rng.standard_normal((2, 3, 4)), "y": rng.standard_normal(4)})


def test_expand():
    rng = np.random.default_rng(7)
    m = op_model("Expand", {"x": ["N", 1, 4]}, consts={"s": np.array([1, 3, 4], np.int64)})
    check_vjp(m, {"x": rng.standard_normal((2, 1, 4))})


@pytest.mark.parametrize("to", [11, 1])
def test_cast(to):
    from onnx import TensorProto

    rng = np.random.default_rng(8)
    m = op_model(
        "Cast",
        {"x": ["N", 5]},
        {"to": to},
        dtype=TensorProto.DOUBLE if to == 1 else TensorProto.FLOAT,
    )
    x = rng.standard_normal((3, 5))
    if to == 1:
        check_vjp(m, {"x": x}, eps=1e-4, rtol=1e-3)
    else:
        check_vjp(m, {"x": x.astype(np.float32)}, eps=1e-2, rtol=1e-3)


def test_dropout_inference():
    rng = np.random.default_rng(9)
    m = op_model("Dropout", {"x": ["N", 5]}, n_outputs=2)
    check_vjp(m, {"x": rng.standard_normal((3, 5))}, seeds=["y0"])


def test_dynamic_unbroadcast_batch():
    """Operand shapes unknown to shape inference: the run-time (Shape-op) un-broadcast path."""
    rng = np.random.default_rng(10)
    m = op_model("Mul", {"a": ["N", "C", 4], "b": ["M", 1, "K"]})
    check_vjp(m, {"a": rng.standard_normal((3, 2, 4)), "b": rng.standard_normal((1, 1, 4))})
    check_vjp(m, {"a": rng.standard_normal((1, 2, 4)), "b": rng.standard_normal((3, 1, 1))})
