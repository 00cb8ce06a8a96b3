"""Gemm (all transA/transB/alpha/beta forms) and MatMul (batched, broadcast, 1-D operands)."""

from __future__ import annotations

import numpy as np
import pytest
from vjp_helpers import check_vjp, op_model


@pytest.mark.parametrize("ta", [0, 1])
@pytest.mark.parametrize("tb", [0, 1])
@pytest.mark.parametrize("c_shape", [None, (5,), (1, 5), (3, 5)])
def test_gemm(ta, tb, c_shape):
    rng = np.random.default_rng(0)
    a_shape = (4, 3) if ta else (3, 4)
    b_shape = (5, 4) if tb else (4, 5)
    inputs = {"a": list(a_shape), "b": list(b_shape)}
    feeds = {"a": rng.standard_normal(a_shape), "b": rng.standard_normal(b_shape)}
    if c_shape:
        inputs["c"] = list(c_shape)
        feeds["c"] = rng.standard_normal(c_shape)
    m = op_model("Gemm", inputs, {"transA": ta, "transB": tb, "alpha": 0.7, "beta": 1.3})
    check_vjp(m, feeds)


def test_gemm_weights_constant():
    rng = np.random.default_rng(1)
    m = op_model(
        "Gemm",
        {"x": ["N", 6]},
        {"transB": 1},
        {"w": rng.standard_normal((4, 6)), "b": rng.standard_normal(4)},
    )
    check_vjp(m, {"x": rng.standard_normal((3, 6))})


MATMUL = [
    ((3, 4), (4, 5)),
    ((2, 3, 4), (4, 5)),
    ((2, 3, 4), (2, 4, 5)),
    ((2, 1, 3, 4), (5, 4, 2)),
    ((4,), (2, 4, 5)),
    ((2, 3, 4), (4,)),
    ((4,), (4,)),
    ((1, 3, 4), (2, 4, 5)),
]


@pytest.mark.parametrize(("sa", "sb"), MATMUL, ids=[str(i) for i in range(len(MATMUL))])
def test_matmul(sa, sb):
    rng = np.random.default_rng(2)
    m = op_model("MatMul", {"a": list(sa), "b": list(sb)})
    check_vjp(m, {"a": rng.standard_normal(sa), "b": rng.standard_normal(sb)})


def test_matmul_dynamic_batch_broadcast():
    rng = np.random.default_rng(3)
    m = op_model("MatMul", {"a": ["N", "H", 3, 4], "b": ["M", 1, 4, 5]})
    check_vjp(m, {"a": rng.standard_normal((2, 3, 3, 4)), "b": rng.standard_normal((1, 1, 4, 5))})
    check_vjp(m, {"a": rng.standard_normal((1, 3, 3, 4)), "b": rng.standard_normal((2, 1, 4, 5))})
