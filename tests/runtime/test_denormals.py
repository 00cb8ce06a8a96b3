"""Denormal floats flushed to zero for optimisation loops (runtime.denormals), and only there.

The reference is IEEE arithmetic itself: 1e-39 is a float32 denormal, so 1e-39 * 1 is 1e-39 with
denormals kept and 0 with them flushed.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from onnxlens import _core
from onnxlens.autodiff import VJPFunction
from onnxlens.runtime import denormals
from onnxlens.runtime.session import make_session

pytestmark = pytest.mark.skipif(
    not _core.HAS_DENORMAL_CONTROL, reason="denormal control needs x86's MXCSR register"
)

TINY = np.float32(1e-39)


def _kept() -> bool:
    return bool(np.array([TINY], np.float32)[0] * np.float32(1.0) != 0)


def _scale_graph() -> onnx.ModelProto:
    """y = x * 1, the multiply done by ORT."""
    one = helper.make_tensor("one", TensorProto.FLOAT, [1], [1.0])
    g = helper.make_graph(
        [helper.make_node("Mul", ["x", "one"], ["y"])],
        "scale",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])],
        [one],
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_flushed_sets_and_restores_the_calling_thread() -> None:
    assert _kept()
    with denormals.flushed():
        assert not _kept()
        with denormals.flushed(False):
            assert _kept()
        assert not _kept()
    assert _kept()


def test_a_flushing_session_leaves_its_creator_as_it_was() -> None:
    """ORT's constructor sets the flag on the thread that makes the session."""
    make_session(_scale_graph(), "cpu", threads=2, flush_denormals=True)
    assert _kept()


@pytest.mark.parametrize("flush", [False, True])
def test_vjp_function_flushes_denormals_only_when_asked(flush) -> None:
    f = VJPFunction.compile(
        _scale_graph(), ["y"], ["x"], batch=2, device="cpu", threads=2, flush_denormals=flush
    )
    x = np.ones((2, 4), np.float32)
    res = f({"x": x}, {"y": np.full((2, 4), TINY, np.float32)})
    grad = res.gradients["x"]  # = cotangent * 1, computed by ORT
    np.testing.assert_array_equal(grad, 0.0 if flush else TINY)
    assert _kept()  # and the caller keeps its own setting after the run
