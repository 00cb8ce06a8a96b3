"""Conv / ConvTranspose data gradients over their attribute variants.

ORT has float32 Conv kernels only; Conv is linear in its input, so central differences are exact
up to float32 rounding and a 1e-3 relative tolerance is tight.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto
from vjp_helpers import check_vjp, op_model

F32 = TensorProto.FLOAT

CONV_CASES = [
    # (C_in, C_out, H, W, kernel, attrs)
    (4, 6, 9, 9, (3, 3), {}),
    (4, 6, 9, 9, (3, 3), {"pads": [1, 1, 1, 1]}),
    (4, 6, 9, 10, (3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1]}),
    (4, 6, 10, 11, (3, 3), {"strides": [2, 2]}),
    (4, 6, 11, 11, (5, 3), {"strides": [3, 2], "pads": [2, 0, 1, 1]}),
    (4, 6, 12, 12, (3, 3), {"dilations": [2, 2], "pads": [2, 2, 2, 2]}),
    (4, 6, 13, 13, (3, 3), {"dilations": [2, 3], "strides": [2, 2], "pads": [1, 0, 0, 2]}),
    (4, 8, 9, 9, (3, 3), {"group": 2, "pads": [1, 1, 1, 1]}),
    (6, 6, 9, 9, (3, 3), {"group": 6, "pads": [1, 1, 1, 1]}),
    (6, 6, 10, 10, (7, 7), {"group": 6, "pads": [3, 3, 3, 3]}),
    (6, 12, 11, 11, (3, 3), {"group": 6, "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    (4, 6, 9, 10, (3, 3), {"auto_pad": "SAME_UPPER", "strides": [2, 2]}),
    (4, 6, 9, 10, (4, 4), {"auto_pad": "SAME_LOWER", "strides": [2, 2]}),
    (4, 6, 9, 10, (3, 3), {"auto_pad": "VALID", "strides": [2, 1]}),
    (4, 6, 9, 9, (1, 1), {}),
    (4, 6, 9, 9, (1, 1), {"strides": [2, 2]}),
    (4, 6, 8, 8, (2, 2), {"pads": [3, 3, 3, 3]}),  # pads larger than kernel: ConvTranspose path
    # strided convs of real networks
    (8, 8, 12, 12, (5, 5), {"group": 8, "strides": [2, 2], "pads": [2, 2, 2, 2]}),
    (3, 8, 14, 14, (7, 7), {"strides": [2, 2], "pads": [3, 3, 3, 3]}),
    (4, 8, 12, 12, (1, 1), {"strides": [2, 2]}),
    (4, 6, 11, 13, (3, 3), {"strides": [3, 3], "pads": [1, 0, 2, 1]}),
    (4, 6, 7, 8, (2, 2), {"strides": [3, 3]}),  # kernel < stride: empty phases
    (4, 6, 10, 10, (4, 4), {"strides": [2, 2], "pads": [5, 5, 5, 5]}),  # pads wider than kernel
    # depthwise, stride > 1: zero insertion + stride-1 depthwise Conv
    (6, 6, 11, 13, (3, 3), {"group": 6, "strides": [2, 2], "pads": [1, 0, 0, 1]}),
    (6, 6, 15, 14, (3, 5), {"group": 6, "strides": [3, 2], "pads": [1, 2, 1, 2]}),
    (6, 6, 9, 9, (3, 3), {"group": 6, "auto_pad": "SAME_UPPER", "strides": [2, 2]}),
    (6, 6, 12, 12, (5, 5), {"group": 6, "strides": [2, 2]}),
]


@pytest.mark.parametrize("case", CONV_CASES, ids=[str(i) for i in range(len(CONV_CASES))])
@pytest.mark.parametrize("bias", [False, True])
def test_conv2d(case, bias):
    cin, cout, h, w, k, attrs = case
    rng = np.random.default_rng(0)
    g = attrs.get("group", 1)
    consts = {"w": rng.standard_normal((cout, cin // g, *k)).astype(np.float32)}
    if bias:
        consts["b"] = rng.standard_normal(cout).astype(np.float32)
    m = op_model("Conv", {"x": ["N", cin, h, w]}, attrs, consts, dtype=F32)
    check_vjp(m, {"x": rng.standard_normal((3, cin, h, w)).astype(np.float32)}, eps=1.0, rtol=1e-4)


@pytest.mark.parametrize("attrs", [{"pads": [1, 1], "strides": [2]}, {"dilations": [3]}])
def test_conv1d(attrs):
    rng = np.random.default_rng(1)
    m = op_model(
        "Conv",
        {"x": ["N", 3, 17]},
        attrs,
        {"w": rng.standard_normal((5, 3, 3)).astype(np.float32)},
        dtype=F32,
    )
    check_vjp(m, {"x": rng.standard_normal((2, 3, 17)).astype(np.float32)}, eps=1.0, rtol=1e-4)


def test_conv_weight_from_input():
    """Input-dependent weights go through ConvTranspose with a tensor weight; gradient w.r.t. the
    weight itself is refused with a clear error."""
    from onnxlens.autodiff import build_vjp
    from onnxlens.errors import UnsupportedOperatorError

    m = op_model("Conv", {"x": ["N", 2, 6, 6], "w": [3, 2, 3, 3]}, {}, dtype=F32)
    with pytest.raises(UnsupportedOperatorError, match="Conv weights"):
        build_vjp(m, ["y0"], ["x", "w"])
    rng = np.random.default_rng(2)
    check_vjp(
        m,
        {
            "x": rng.standard_normal((2, 2, 6, 6)).astype(np.float32),
            "w": rng.standard_normal((3, 2, 3, 3)).astype(np.float32),
        },
        wrt=["x"],
        eps=1.0,
        rtol=1e-4,
    )


CONVT_CASES = [
    (4, 6, 5, 5, (3, 3), {}),
    (4, 6, 5, 6, (3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1]}),
    (4, 6, 5, 6, (3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 1]}),
    (4, 6, 5, 5, (4, 4), {"strides": [2, 2], "pads": [1, 1, 1, 1]}),
    (4, 6, 5, 5, (3, 3), {"strides": [3, 2], "dilations": [2, 1], "pads": [0, 2, 1, 0]}),
    (4, 8, 5, 5, (3, 3), {"group": 2, "strides": [2, 2]}),
    (4, 6, 5, 5, (3, 3), {"strides": [2, 2], "output_shape": [10, 10]}),
    (4, 6, 5, 5, (3, 3), {"strides": [2, 2], "auto_pad": "SAME_UPPER"}),
]


@pytest.mark.parametrize("case", CONVT_CASES, ids=[str(i) for i in range(len(CONVT_CASES))])
def test_conv_transpose(case):
    cin, cout, h, w, k, attrs = case
    g = attrs.get("group", 1)
    rng = np.random.default_rng(3)
    consts = {
        "w": rng.standard_normal((cin, cout // g, *k)).astype(np.float32),
        "b": rng.standard_normal(cout).astype(np.float32),
    }
    m = op_model("ConvTranspose", {"x": ["N", cin, h, w]}, attrs, consts, dtype=F32)
    check_vjp(m, {"x": rng.standard_normal((2, cin, h, w)).astype(np.float32)}, eps=1.0, rtol=1e-4)


def test_conv_needs_static_size():
    from onnxlens.autodiff import build_vjp
    from onnxlens.errors import UnsupportedOperatorError

    rng = np.random.default_rng(4)
    m = op_model(
        "Conv",
        {"x": ["N", 3, "H", "W"]},
        {"strides": [2, 2]},
        {"w": rng.standard_normal((4, 3, 3, 3)).astype(np.float32)},
        dtype=F32,
    )
    with pytest.raises(UnsupportedOperatorError, match="input_shape="):
        build_vjp(m, ["y0"], ["x"])
    vg = build_vjp(m, ["y0"], ["x"], input_shape=(None, 3, 11, 12))
    assert "x" in vg.grad_outputs
