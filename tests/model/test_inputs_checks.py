"""Model-level input checks: NaN/inf, empty batches, several inputs, integer (uint8) image inputs.

Every entry point goes through Model.prepare, so each check is asserted on the entry points a
user calls (run, activations, gradient, vjp, activations_and_gradients), and values where the
input is valid are compared with a plain ONNX Runtime run.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import onnxlens
from onnxlens.errors import ConfigurationError, OnnxLensError, ShapeError
from synthetic import IR_VERSION, tiny_cnn

ENTRY_POINTS = {
    "run": lambda m, x: m.run(x),
    "activations": lambda m, x: m.activations(x, ["relu_out"]),
    "gradient": lambda m, x: m.gradient(x, 1),
    "vjp": lambda m, x: m.vjp(x, {"logits": np.ones((len(x), 5), np.float32)}),
    "activations_and_gradients": lambda m, x: m.activations_and_gradients(x, ["relu_out"], 1),
}


@pytest.fixture
def model() -> onnxlens.Model:
    return onnxlens.Model(tiny_cnn(), device="cpu", threads=1)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_non_finite_input_is_an_error_with_the_count(model, entry, bad):
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    x[1, 2, 3, 4] = bad
    x[0, 0, 0, 0] = bad
    with pytest.raises(ShapeError, match=r"2 non-finite values of 384") as info:
        ENTRY_POINTS[entry](model, x)
    assert ("2 NaN" if np.isnan(bad) else "2 inf") in str(info.value)


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_empty_batch_is_a_clear_error(model, entry):
    with pytest.raises(ShapeError, match="batch is empty"):
        ENTRY_POINTS[entry](model, np.zeros((0, 3, 8, 8), np.float32))


def test_empty_image_list_is_a_clear_error(model):
    with pytest.raises(ShapeError, match="no inputs"):
        model.activations(np.zeros((0, 8, 8, 3), np.uint8), ["relu_out"])


def test_finite_input_still_matches_plain_ort(model):
    x = np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)
    sess = ort.InferenceSession(tiny_cnn().SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(
        model.predict(x), sess.run(["logits"], {"x": x})[0], rtol=1e-6, atol=1e-6
    )


def _two_inputs() -> onnx.ModelProto:
    m = tiny_cnn()
    g = m.graph
    g.input.append(helper.make_tensor_value_info("bias", TensorProto.FLOAT, ["N", 5]))
    g.node[-1].output[0] = "logits0"
    g.node.append(helper.make_node("Add", ["logits0", "bias"], ["logits"], name="add_bias"))
    onnx.checker.check_model(m)
    return m


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_several_inputs_get_a_clear_message(entry):
    model = onnxlens.Model(_two_inputs(), device="cpu", threads=1)
    assert [i.name for i in model.inputs] == ["x", "bias"]
    assert "Conv" in {la.op for la in model.layers}  # inspecting still works
    x = np.zeros((1, 3, 8, 8), np.float32)
    with pytest.raises(ConfigurationError, match=r"2 runtime inputs \('x'.*'bias'"):
        ENTRY_POINTS[entry](model, x)


def _uint8_input() -> onnx.ModelProto:
    """An NHWC uint8 image input, cast and scaled to float inside the graph (TF-style export)."""
    cnn = tiny_cnn(layout="NHWC")
    g = cnn.graph
    g.input[0].CopyFrom(helper.make_tensor_value_info("x", TensorProto.UINT8, ["N", 8, 8, 3]))
    pre = [
        helper.make_node("Cast", ["x"], ["xf"], to=TensorProto.FLOAT, name="cast"),
        helper.make_node("Mul", ["xf", "scale"], ["xs"], name="scale"),
    ]
    g.initializer.append(helper.make_tensor("scale", TensorProto.FLOAT, [], [1 / 255]))
    for n in g.node:
        for i, name in enumerate(n.input):
            if name == "x":
                n.input[i] = "xs"
    nodes = pre + list(g.node)
    del g.node[:]
    g.node.extend(nodes)
    m = helper.make_model(g, opset_imports=list(cnn.opset_import), ir_version=IR_VERSION)
    onnx.checker.check_model(m)
    return m


def test_uint8_input_runs_on_uint8_arrays_and_explains_the_rest():
    proto = _uint8_input()
    model = onnxlens.Model(proto, device="cpu", threads=1)
    x = np.random.default_rng(2).integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    ref = sess.run(["logits"], {"x": x})[0]
    np.testing.assert_allclose(model.predict(x), ref, rtol=1e-6, atol=1e-6)
    with pytest.raises(ConfigurationError, match="takes uint8 values"):
        model.predict(x.astype(np.float32))
    with pytest.raises(ConfigurationError, match="integer values"):
        model.gradient(x, 1)
    # a float layer after the cast can be differentiated: the float model's input gradient
    c = np.random.default_rng(3).standard_normal((2, 5)).astype(np.float32)
    g = model.vjp(x, {"logits": c}, wrt="xs")["xs"]
    ref_model = onnxlens.Model(tiny_cnn(layout="NHWC"), device="cpu", threads=1)
    ref_g = ref_model.vjp(x.astype(np.float32) / 255, {"logits": c})["input"]
    np.testing.assert_allclose(g, ref_g, rtol=1e-5, atol=1e-6)
    assert issubclass(ConfigurationError, OnnxLensError)


def test_clear_sessions_frees_and_rebuilds(caplog) -> None:
    """clear_sessions drops the cached sessions and VJP graphs; the next call rebuilds them and
    gives the same values. The assumed preprocessing is announced once, not on every call."""
    import logging

    model = onnxlens.Model(tiny_cnn(size=16), device="cpu")
    img = np.random.default_rng(0).integers(0, 255, (1, 16, 16, 3), dtype=np.uint8)
    with caplog.at_level(logging.INFO, logger="onnxlens"):
        g1 = model.gradient(list(img), 1)
        model.predict(list(img))
    assert sum("preprocessing" in r.message for r in caplog.records) == 1
    assert len(model._sessions._sessions) > 0 and model.gradients._graphs
    model.clear_sessions()
    assert len(model._sessions._sessions) == 0 and not model.gradients._graphs
    np.testing.assert_array_equal(model.gradient(list(img), 1), g1)
