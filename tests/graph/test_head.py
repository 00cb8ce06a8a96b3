"""graph.head.head_graph: the sub-graph from one tensor to the outputs, run by ONNX Runtime on the
tapped activation, against the full model (and numpy where a tensor is overridden)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxlens.graph import add_outputs
from onnxlens.graph.head import head_graph
from onnxlens.graph.layers import value_dims
from synthetic import IR_VERSION, tiny_cnn


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _inferred(model: onnx.ModelProto) -> onnx.ModelProto:
    return onnx.shape_inference.infer_shapes(model)


def _skip_model(seed: int = 0) -> onnx.ModelProto:
    """x -> Conv(3->3, pad 1) -> Relu = r; y = Add(r, x) -> GAP -> Flatten -> Gemm(3->4)."""
    rng = np.random.default_rng(seed)
    inits = {
        "conv.w": rng.standard_normal((3, 3, 3, 3)).astype(np.float32),
        "conv.b": rng.standard_normal(3).astype(np.float32),
        "fc.w": rng.standard_normal((4, 3)).astype(np.float32),
        "fc.b": rng.standard_normal(4).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "conv.w", "conv.b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Add", ["r", "x"], ["s"]),
        helper.make_node("GlobalAveragePool", ["s"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "fc.w", "fc.b"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "skip",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 6, 6])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4])],
        initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    return _inferred(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=IR_VERSION)
    )


@pytest.mark.parametrize("tensor", ["conv_out", "relu_out", "pool_out", "flat"])
def test_head_on_the_tapped_activation_equals_the_full_model(tensor: str) -> None:
    model = _inferred(tiny_cnn())
    head = head_graph(model, tensor)
    assert head is not None
    onnx.checker.check_model(head)
    assert [v.name for v in head.graph.input] == [tensor]
    assert value_dims(head.graph.input[0])[0] == "batch"  # type: ignore[index]
    assert [o.name for o in head.graph.output] == ["logits"]
    x = np.random.default_rng(1).standard_normal((3, 3, 8, 8)).astype(np.float32)
    act, logits = _session(add_outputs(model, [tensor])).run([tensor, "logits"], {"x": x})
    (got,) = _session(head).run(["logits"], {tensor: act})
    np.testing.assert_allclose(got, logits, rtol=1e-6, atol=1e-6)


def test_head_keeps_only_what_follows_the_tensor() -> None:
    model = _inferred(tiny_cnn())
    head = head_graph(model, "relu_out")
    assert head is not None
    assert [n.op_type for n in head.graph.node] == [
        "MaxPool",
        "GlobalAveragePool",
        "Flatten",
        "Gemm",
    ]
    assert {t.name for t in head.graph.initializer} == {"fc.w", "fc.b"}


def test_head_graph_does_not_mutate_its_input() -> None:
    model = _inferred(tiny_cnn())
    before = model.SerializeToString()
    head_graph(model, "pool_out")
    head_graph(_skip_model(), "r", allow_input=True)
    assert model.SerializeToString() == before


def test_a_skip_connection_around_the_tensor_has_no_head() -> None:
    assert head_graph(_skip_model(), "r") is None


def test_allow_input_takes_the_runtime_inputs_after_the_tensor() -> None:
    model = _skip_model()
    head = head_graph(model, "r", allow_input=True)
    assert head is not None
    onnx.checker.check_model(head)
    assert [v.name for v in head.graph.input] == ["r", "x"]
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    r, logits = _session(add_outputs(model, ["r"])).run(["r", "logits"], {"x": x})
    sess = _session(head)
    np.testing.assert_allclose(
        sess.run(["logits"], {"r": r, "x": x})[0], logits, rtol=1e-6, atol=1e-6
    )
    # An overridden r, the rest computed as usual: GAP(r' + x) @ fc.w.T + fc.b in numpy.
    r2 = rng.standard_normal(r.shape).astype(np.float32)
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    want = (r2 + x).mean(axis=(2, 3)) @ inits["fc.w"].T + inits["fc.b"]
    np.testing.assert_allclose(
        sess.run(["logits"], {"r": r2, "x": x})[0], want, rtol=1e-5, atol=1e-5
    )


def test_a_head_without_a_skip_does_not_take_the_input_with_allow_input() -> None:
    head = head_graph(_skip_model(), "s", allow_input=True)
    assert head is not None
    assert [v.name for v in head.graph.input] == ["s"]


def test_a_tensor_of_unknown_type_has_no_head() -> None:
    """The head's input needs the tensor's type, which only shape inference gives."""
    assert head_graph(tiny_cnn(), "relu_out") is None


def test_a_control_flow_node_in_the_head_gives_none() -> None:
    """If bodies may read outer tensors the walk cannot see, so a head through one is refused."""
    model = tiny_cnn()
    g = model.graph
    logits = next(n for n in g.node if n.op_type == "Gemm")
    logits.output[0] = "pre"

    def branch(name: str, op: str) -> onnx.GraphProto:
        return helper.make_graph(
            [helper.make_node(op, ["pre"], [f"{name}_out"])],
            name,
            [],
            [helper.make_tensor_value_info(f"{name}_out", TensorProto.FLOAT, ["N", 5])],
        )

    g.initializer.append(numpy_helper.from_array(np.array(True), "flag"))
    g.node.append(
        helper.make_node(
            "If",
            ["flag"],
            ["logits"],
            then_branch=branch("then", "Relu"),
            else_branch=branch("else", "Neg"),
        )
    )
    model = _inferred(model)
    onnx.checker.check_model(model)
    assert head_graph(model, "relu_out") is None
