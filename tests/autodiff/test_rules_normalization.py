"""BatchNormalization (inference), LayerNormalization, InstanceNormalization, LpNormalization."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto
from vjp_helpers import check_vjp, op_model


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (2, 3), (2, 3, 7)])
def test_batch_norm(shape):
    rng = np.random.default_rng(0)
    c = shape[1]
    consts = {
        "s": rng.standard_normal(c),
        "b": rng.standard_normal(c),
        "m": rng.standard_normal(c),
        "v": rng.uniform(0.5, 2, c),
    }
    m = op_model("BatchNormalization", {"x": ["N", *shape[1:]]}, {"epsilon": 1e-3}, consts)
    check_vjp(m, {"x": rng.standard_normal(shape)})


@pytest.mark.parametrize("axis", [-1, 2, 1])
def test_layer_norm(axis):
    rng = np.random.default_rng(1)
    shape = (2, 3, 4, 5)
    norm = shape[axis:]
    consts = {"s": rng.standard_normal(norm), "b": rng.standard_normal(norm)}
    m = op_model(
        "LayerNormalization",
        {"x": ["N", 3, 4, 5]},
        {"axis": axis, "epsilon": 1e-5},
        consts,
        opset=17,
    )
    check_vjp(m, {"x": rng.standard_normal(shape)}, rtol=1e-5)


def test_layer_norm_scale_grad():
    rng = np.random.default_rng(2)
    m = op_model("LayerNormalization", {"x": ["N", 6], "s": [6], "b": [6]}, {}, opset=17)
    check_vjp(
        m,
        {
            "x": rng.standard_normal((3, 6)),
            "s": rng.standard_normal(6),
            "b": rng.standard_normal(6),
        },
        rtol=1e-5,
    )


def test_instance_norm():
    rng = np.random.default_rng(3)
    m = op_model(
        "InstanceNormalization",
        {"x": ["N", 3, 4, 5]},
        {},
        {
            "s": rng.standard_normal(3).astype(np.float32),
            "b": rng.standard_normal(3).astype(np.float32),
        },
        dtype=TensorProto.FLOAT,
    )
    check_vjp(
        m,
        {"x": rng.standard_normal((2, 3, 4, 5)).astype(np.float32)},
        eps=1e-2,
        rtol=2e-3,
        atol=1e-3,
    )


def test_lp_norm():
    rng = np.random.default_rng(4)
    m = op_model("LpNormalization", {"x": ["N", 3, 5]}, {"axis": -1})
    check_vjp(m, {"x": rng.standard_normal((2, 3, 5))})
