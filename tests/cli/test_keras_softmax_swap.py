""" "Swap softmax for linear" (keras-vis): a squashed output is explained at its logit.

Fast tests on a linear model, y = sigmoid(flatten(x) @ A), where the logit's gradient is A's
column and the probability's s (1 - s) times it (numpy references)."""

from __future__ import annotations

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxlens.cli import main
from onnxlens.model.targets import explained_output, logit_of
from synthetic import IR_VERSION

S = 8  # input size


def _squashed(op: str = "Sigmoid", copy: bool = False) -> tuple[onnx.ModelProto, np.ndarray]:
    a = np.random.default_rng(0).normal(0, 0.05, (3 * S * S, 4)).astype(np.float32)
    nodes = [
        helper.make_node("Flatten", ["x"], ["f"]),
        helper.make_node("MatMul", ["f", "A"], ["logits"]),
        helper.make_node(
            op, ["logits"], ["p" if copy else "probs"], **({"axis": -1} if op != "Sigmoid" else {})
        ),
    ]
    if copy:  # tf2onnx names its output "Identity:0" behind the softmax
        nodes.append(helper.make_node("Identity", ["p"], ["probs"]))
    g = helper.make_graph(
        nodes,
        "squashed",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, S, S])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 4])],
        initializer=[numpy_helper.from_array(a, "A")],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=IR_VERSION)
    return m, a


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax", "Sigmoid"])
@pytest.mark.parametrize("copy", [False, True])
def test_logit_of_finds_the_input_of_the_squashing_op(op, copy):
    proto, _ = _squashed(op, copy)
    assert logit_of(proto, "probs") == ("logits", op)
    assert logit_of(proto, "logits") is None
    assert explained_output(proto, ["probs"], None)[0] == "logits"
    assert explained_output(proto, ["probs"], None, probability=True) == (None, None)
    assert explained_output(proto, ["probs"], "logits") == ("logits", None)


def test_gradient_cli_differentiates_the_logit_unless_asked(tmp_path, capsys):
    """Before: the sigmoid's probability was differentiated (the gradient shrunk by s (1 - s))."""
    proto, a = _squashed("Sigmoid")
    onnx.save(proto, tmp_path / "m.onnx")
    img = (np.random.default_rng(1).random((S, S, 3)) * 255).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), img)
    grads = {}
    for flag in ([], ["--probability"]):
        out = tmp_path / ("p" if flag else "l")
        argv = ["gradient", str(tmp_path / "m.onnx"), str(tmp_path / "a.png"), "--target", "2"]
        assert main([*argv, "--out", str(out), "--device", "cpu", *flag]) == 0
        grads[bool(flag)] = np.load(out / "a_input_default.npy")
        assert ("explaining the logit" in capsys.readouterr().err) != bool(flag)
    want = a[:, 2].reshape(3, S, S)
    np.testing.assert_allclose(grads[False], want, rtol=1e-5, atol=1e-7)
    ratio = grads[True] / want  # s (1 - s) of the sample's probability, the same everywhere
    assert 0 < ratio.min() <= ratio.max() <= 0.25 and np.ptp(ratio) < 1e-4
