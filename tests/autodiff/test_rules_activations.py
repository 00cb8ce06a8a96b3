"""Numerical checks of the activation rules (float64, inputs kept away from kinks)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto
from vjp_helpers import check_vjp, op_model


def _x(seed=0, shape=(3, 4, 5)):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-4, 4, shape)
    # keep |x| and |x -/+ 3| away from the kinks of ReLU, HardSwish, HardSigmoid, Clip
    for k in (0.0, -3.0, 3.0, -2.5, 2.5, 0.5, -1.0, 1.0):
        x = np.where(np.abs(x - k) < 0.05, x + 0.1, x)
    return x


FLOAT32_ONLY = {"Celu"}  # ORT kernels without float64

CASES = [
    ("Relu", {}),
    ("LeakyRelu", {"alpha": 0.1}),
    ("Sigmoid", {}),
    ("HardSigmoid", {}),
    ("HardSigmoid", {"alpha": 1 / 6, "beta": 0.5}),
    ("HardSwish", {}),
    ("Tanh", {}),
    ("Elu", {"alpha": 0.7}),
    ("Selu", {}),
    ("Celu", {"alpha": 1.5}),
    ("Softplus", {}),
    ("Softsign", {}),
    ("Mish", {}),
    ("ThresholdedRelu", {"alpha": 0.5}),
]


@pytest.mark.parametrize(("op", "attrs"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_activation(op, attrs):
    if op in FLOAT32_ONLY:
        m = op_model(op, {"x": ["N", 4, 5]}, attrs, opset=18, dtype=TensorProto.FLOAT)
        check_vjp(m, {"x": _x().astype(np.float32)}, eps=1e-2, rtol=2e-3, atol=2e-3)
    else:
        check_vjp(op_model(op, {"x": ["N", 4, 5]}, attrs, opset=18), {"x": _x()})


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu(approximate):
    # ORT expands Gelu into Erf, which has no float64 kernel: float32 here.
    m = op_model(
        "Gelu", {"x": ["N", 4, 5]}, {"approximate": approximate}, opset=20, dtype=TensorProto.FLOAT
    )
    check_vjp(m, {"x": _x().astype(np.float32)}, eps=1e-2, rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("slope_shape", [(1,), (4, 1, 1), (1, 1, 1)])
def test_prelu(slope_shape):
    rng = np.random.default_rng(1)
    m = op_model("PRelu", {"x": ["N", 4, 3, 3], "s": list(slope_shape)})
    check_vjp(m, {"x": _x(2, (2, 4, 3, 3)), "s": rng.uniform(0.05, 0.5, slope_shape)})


@pytest.mark.parametrize(
    ("opset", "attrs", "consts", "order"),
    [
        (10, {"min": -1.0, "max": 2.0}, {}, ["x"]),
        (8, {"max": 2.0}, {}, ["x"]),
        (13, {}, {"lo": np.array(-1.0), "hi": np.array(2.0)}, ["x", "lo", "hi"]),
        (13, {}, {"lo": np.array(0.0)}, ["x", "lo"]),
        (13, {}, {"hi": np.array(2.0)}, ["x", "", "hi"]),
        (13, {}, {}, ["x"]),
    ],
)
def test_clip_forms(opset, attrs, consts, order):
    m = op_model(
        "Clip",
        {"x": ["N", 4, 5]},
        attrs,
        consts,
        order=order,
        opset=opset,
        dtype=TensorProto.FLOAT if opset < 12 else TensorProto.DOUBLE,
    )
    x = _x(3)
    if opset < 12:  # Clip-6 has float kernels only
        check_vjp(m, {"x": x.astype(np.float32)}, eps=1e-3, rtol=1e-3)
    else:
        check_vjp(m, {"x": x})
