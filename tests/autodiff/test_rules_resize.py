"""Resize (nearest/linear/cubic, every coordinate mode, scales or sizes, '' optional inputs, opset
10/11/13/18 forms) and Upsample. ORT's Resize has float kernels only: float32, linear in x."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto
from vjp_helpers import check_vjp, op_model

F32 = TensorProto.FLOAT
EMPTY = np.zeros(0, np.float32)


def _x(shape=(2, 3, 5, 6)):
    return np.random.default_rng(0).standard_normal(shape).astype(np.float32)


def _check(m, shape=(2, 3, 5, 6)):
    check_vjp(m, {"x": _x(shape)}, eps=1.0, rtol=1e-4)


MODES = [
    {"mode": "nearest"},
    {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"},
    {
        "mode": "nearest",
        "coordinate_transformation_mode": "half_pixel",
        "nearest_mode": "round_prefer_ceil",
    },
    {"mode": "linear"},
    {"mode": "linear", "coordinate_transformation_mode": "align_corners"},
    {"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"},
    {"mode": "linear", "coordinate_transformation_mode": "asymmetric"},
    {"mode": "cubic"},
]


@pytest.mark.parametrize("attrs", MODES, ids=[f"{i}" for i in range(len(MODES))])
@pytest.mark.parametrize("scales", [(1, 1, 2, 2), (1, 1, 1.5, 0.5), (1, 1, 3, 1)])
def test_resize_scales_opset13(attrs, scales):
    m = op_model(
        "Resize",
        {"x": ["N", 3, 5, 6]},
        attrs,
        {"roi": EMPTY, "scales": np.array(scales, np.float32)},
        dtype=F32,
        opset=13,
    )
    _check(m)


@pytest.mark.parametrize("attrs", MODES[:5], ids=[f"{i}" for i in range(5)])
@pytest.mark.parametrize("sizes", [(2, 3, 10, 12), (2, 3, 7, 4)])
def test_resize_sizes_empty_optionals(attrs, sizes):
    m = op_model(
        "Resize",
        {"x": [2, 3, 5, 6]},
        attrs,
        {"sz": np.array(sizes, np.int64)},
        order=["x", "", "", "sz"],
        dtype=F32,
        opset=13,
    )
    _check(m)


def test_resize_opset11_roi_scales_empty_sizes():
    consts = {"roi": EMPTY, "sc": np.array([1, 1, 2, 2], np.float32)}
    m = op_model(
        "Resize",
        {"x": ["N", 3, 5, 6]},
        {"mode": "linear"},
        consts,
        order=["x", "roi", "sc"],
        dtype=F32,
        opset=11,
    )
    _check(m)


def test_resize_opset10_and_upsample():
    m = op_model(
        "Resize",
        {"x": ["N", 3, 5, 6]},
        {"mode": "nearest"},
        {"sc": np.array([1, 1, 2, 3], np.float32)},
        dtype=F32,
        opset=10,
    )
    _check(m)
    m = op_model(
        "Upsample",
        {"x": ["N", 3, 5, 6]},
        {"mode": "linear"},
        {"sc": np.array([1, 1, 2, 2], np.float32)},
        dtype=F32,
        opset=9,
    )
    _check(m)


def test_resize_opset18_axes():
    consts = {"roi": EMPTY, "sc": np.array([2, 1.5], np.float32)}
    m = op_model(
        "Resize",
        {"x": ["N", 3, 5, 6]},
        {"mode": "linear", "axes": [2, 3]},
        consts,
        dtype=F32,
        opset=18,
    )
    _check(m)


def test_nearest_integer_upsampling_is_block_sum():
    from onnxlens.autodiff import build_vjp

    m = op_model(
        "Resize",
        {"x": ["N", 3, 5, 6]},
        {"mode": "nearest"},
        {"roi": EMPTY, "scales": np.array([1, 1, 2, 2], np.float32)},
        dtype=F32,
        opset=13,
    )
    ops = [n.op_type for n in build_vjp(m, ["y0"], ["x"]).proto.graph.node]
    assert "MatMul" not in ops and ops.count("ReduceSum") == 2


def test_resize_unknown_size_error():
    from onnxlens.autodiff import build_vjp
    from onnxlens.errors import UnsupportedOperatorError

    m = op_model(
        "Resize",
        {"x": ["N", 3, "H", "W"]},
        {"mode": "linear"},
        {"roi": EMPTY, "scales": np.array([1, 1, 2, 2], np.float32)},
        dtype=F32,
        opset=13,
    )
    with pytest.raises(UnsupportedOperatorError, match="input_shape="):
        build_vjp(m, ["y0"], ["x"])
    vg = build_vjp(m, ["y0"], ["x"], input_shape=(None, 3, 5, 6))
    assert vg.grad_outputs
