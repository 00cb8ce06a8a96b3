"""graph.shapes.same_pads: the explicit pads auto_pad SAME_UPPER/SAME_LOWER stand for, checked
against ONNX Runtime itself: a one-node Conv or MaxPool with auto_pad and its twin with our
explicit pads must give the same output, for odd and even sizes, strides 1-3, dilations 1-2.

ORT 1.31 implements auto_pad SAME only in part. Conv refuses it with dilations > 1; the spec's
SAME depends on the window only through its extent (k - 1) * d + 1, so the auto_pad side runs
the same Conv undilated, with the kernel spread out by zeros to that extent. MaxPool derives its
SAME pads from the undilated kernel (7 pixels, 3x3 window, dilation 2, stride 1 come out 5 wide,
not the spec's ceil(7 / 1) = 7) and fails on a window shorter than the stride ("padding values
must be non-negative"), so MaxPool is compared where ORT follows the spec: dilation 1, windows
at least as long as the stride. onnx.reference is no oracle either: with SAME_LOWER and a
dilation it drops a row, and it splits a negative total unevenly.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxlens.graph.shapes import same_pads, split_pad

SIZES = [(7, 8), (8, 7), (5, 5), (6, 6)]  # (H, W): odd and even, mixed per axis
KERNELS = [(1, 1), (2, 3), (3, 3)]  # 1 x 1 with stride > 1 needs "negative" padding (clamped)


def _short(size: tuple[int, int], k: tuple[int, int], s: int, d: int) -> bool:
    """A window that needs less than no padding: (ceil(n / s) - 1) * s + extent < n."""
    return any(
        (math.ceil(n / s) - 1) * s + (kk - 1) * d + 1 < n for n, kk in zip(size, k, strict=True)
    )


CASES = [
    pytest.param(
        op, mode, s, d, size, k, id=f"{op}-{mode}-s{s}-d{d}-{size[0]}x{size[1]}-k{k[0]}x{k[1]}"
    )
    for op, mode, s, d, size, k in itertools.product(
        ["Conv", "MaxPool"], ["SAME_UPPER", "SAME_LOWER"], [1, 2, 3], [1, 2], SIZES, KERNELS
    )
    if op == "Conv" or (d == 1 and not _short(size, k, s, d))
]


def _ort(op: str, x: np.ndarray, w: np.ndarray | None, **attrs) -> np.ndarray:
    node = helper.make_node(op, ["x", "w"] if w is not None else ["x"], ["y"], **attrs)
    graph = helper.make_graph(
        [node],
        "pads",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None] * 4)],
        initializer=[numpy_helper.from_array(w, "w")] if w is not None else [],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    onnx.checker.check_model(model)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(["y"], {"x": x})[0]


def _spread(w: np.ndarray, d: int) -> np.ndarray:
    """The undilated kernel equal to `w` at dilation `d`: taps d apart, zeros between."""
    out = np.zeros((*w.shape[:2], *((k - 1) * d + 1 for k in w.shape[2:])), w.dtype)
    out[:, :, ::d, ::d] = w
    return out


@pytest.mark.parametrize(("op", "mode", "stride", "dilation", "size", "kernel"), CASES)
def test_explicit_twin_matches_onnx_runtime(op, mode, stride, dilation, size, kernel) -> None:
    rng = np.random.default_rng(sum(size) + 7 * stride + 13 * dilation + sum(kernel))
    x = rng.standard_normal((1, 2, *size)).astype(np.float32)
    begins, ends = same_pads(size, kernel, [stride] * 2, [dilation] * 2, mode)
    assert min(begins + ends) >= 0
    s2, d2 = [stride] * 2, [dilation] * 2
    if op == "Conv":
        w = rng.standard_normal((3, 2, *kernel)).astype(np.float32)
        got = _ort("Conv", x, w, strides=s2, dilations=d2, pads=begins + ends)
        want = _ort("Conv", x, _spread(w, dilation), strides=s2, auto_pad=mode)
    else:
        k = list(kernel)
        got = _ort("MaxPool", x, None, kernel_shape=k, strides=s2, pads=begins + ends)
        want = _ort("MaxPool", x, None, kernel_shape=k, strides=s2, auto_pad=mode)
    assert list(want.shape[2:]) == [math.ceil(n / stride) for n in size]  # the spec's size
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_the_odd_pixel_goes_to_the_end_for_upper_and_the_beginning_for_lower() -> None:
    """Size 8, 3x3 window, stride 2: out 4, total (4 - 1) * 2 + 3 - 8 = 1 pixel."""
    assert same_pads([8], [3], [2], [1], "SAME_UPPER") == ([0], [1])
    assert same_pads([8], [3], [2], [1], "SAME_LOWER") == ([1], [0])
    # dilation 2 makes the window 5 wide: total (8 - 1) * 1 + 5 - 8 = 4, split evenly
    assert same_pads([8], [3], [1], [2], "SAME_LOWER") == ([2], [2])
    assert split_pad(5, "SAME_UPPER") == (2, 3) and split_pad(5, "SAME_LOWER") == (3, 2)


def test_a_window_shorter_than_the_stride_needs_no_padding() -> None:
    # size 8, 1x1, stride 3: out 3; the spec's total (3 - 1) * 3 + 1 - 8 = -1 clamps to 0
    assert same_pads([8, 7], [1, 1], [3, 3], [1, 1], "SAME_UPPER") == ([0, 0], [0, 0])
