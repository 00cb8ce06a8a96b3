"""graph.layers.subgraph_inputs: the outer-scope names If/Loop bodies read, against hand-written
sets for hand-built nodes (the bodies' own inputs, node outputs and initializers shadow)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxlens.graph.layers import subgraph_inputs


def _vi(name: str, elem: int = TensorProto.FLOAT) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, None)


def _body(
    nodes: Sequence[onnx.NodeProto],
    outputs: Sequence[str],
    inputs: Sequence[onnx.ValueInfoProto] = (),
    initializer: Sequence[onnx.TensorProto] = (),
    name: str = "body",
) -> onnx.GraphProto:
    return helper.make_graph(
        list(nodes), name, list(inputs), [_vi(o) for o in outputs], initializer=list(initializer)
    )


def _loop_inputs(*carried: str) -> list[onnx.ValueInfoProto]:
    """A Loop body's inputs: iteration number, condition, then the loop-carried values."""
    return [
        helper.make_tensor_value_info("iter", TensorProto.INT64, []),
        helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
        *(_vi(c) for c in carried),
    ]


def test_node_without_subgraphs_reads_nothing_implicitly() -> None:
    assert subgraph_inputs(helper.make_node("Add", ["a", "b"], ["c"])) == []


def test_if_branches_read_outer_names() -> None:
    then_g = _body([helper.make_node("Add", ["x", "w"], ["t"])], ["t"], name="then")
    else_g = _body([helper.make_node("Neg", ["z"], ["e"])], ["e"], name="else")
    node = helper.make_node("If", ["cond"], ["y"], then_branch=then_g, else_branch=else_g)
    got = subgraph_inputs(node)
    # The If's own input ("cond") is explicit, not an implicit read.
    assert set(got) == {"x", "w", "z"}


def test_names_the_body_defines_shadow_outer_ones() -> None:
    """A body node output, a body initializer and a later read of an earlier body output are the
    body's own; only "x" and "outer_b" come from outside."""
    local_w = numpy_helper.from_array(np.ones(3, np.float32), "w")
    then_g = _body(
        [
            helper.make_node("Mul", ["x", "w"], ["xw"]),
            helper.make_node("Add", ["xw", "outer_b"], ["t"]),
            helper.make_node("Relu", ["t"], ["y_then"]),
        ],
        ["y_then"],
        initializer=[local_w],
        name="then",
    )
    else_g = _body([helper.make_node("Identity", ["w"], ["y_else"])], ["y_else"], name="else")
    node = helper.make_node("If", ["cond"], ["y"], then_branch=then_g, else_branch=else_g)
    assert set(subgraph_inputs(node)) == {"x", "outer_b", "w"}  # else reads the outer "w"


def test_empty_optional_inputs_are_not_names() -> None:
    body = _body(
        [
            helper.make_node("Clip", ["v", "", "hi"], ["v_out"]),
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
        ],
        ["cond_out", "v_out"],
        inputs=_loop_inputs("v"),
    )
    node = helper.make_node("Loop", ["M", "", "v0"], ["vf"], body=body)
    assert set(subgraph_inputs(node)) == {"hi"}


def test_loop_body_inputs_shadow_outer_names() -> None:
    """The iteration number, the condition and the carried value are the body's inputs."""
    body = _body(
        [
            helper.make_node("Cast", ["iter"], ["iter_f"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["v", "iter_f"], ["scaled"]),
            helper.make_node("Add", ["scaled", "bias"], ["v_out"]),
            helper.make_node("Less", ["iter", "limit"], ["cond_out"]),
        ],
        ["cond_out", "v_out"],
        inputs=_loop_inputs("v"),
    )
    node = helper.make_node("Loop", ["M", "", "v0"], ["vf"], body=body)
    assert set(subgraph_inputs(node)) == {"bias", "limit"}


def test_if_nested_in_a_loop_reports_its_outer_reads() -> None:
    """A nested If's reads of names outside both bodies are the Loop's implicit inputs too."""
    then_g = _body([helper.make_node("Add", ["v", "outer_a"], ["o1"])], ["o1"], name="then")
    else_g = _body([helper.make_node("Mul", ["v", "outer_b"], ["o2"])], ["o2"], name="else")
    body = _body(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("If", ["cond_in"], ["v_out"], then_branch=then_g, else_branch=else_g),
        ],
        ["cond_out", "v_out"],
        inputs=_loop_inputs("v"),
    )
    node = helper.make_node("Loop", ["M", "", "v0"], ["vf"], body=body)
    assert set(subgraph_inputs(node)) == {"outer_a", "outer_b"}


def test_enclosing_body_names_shadow_reads_of_a_nested_if() -> None:
    """What the nested If reads from the Loop body (its input, a tensor it computes, its
    initializer) is not read from outside the Loop."""
    local_k = numpy_helper.from_array(np.full(1, 2.0, np.float32), "k")
    then_g = _body(
        [helper.make_node("Add", ["t", "outer_a"], ["o1"])], ["o1"], name="then"
    )  # "t": computed in the Loop body
    else_g = _body(
        [
            helper.make_node("Mul", ["v", "outer_b"], ["vb"]),  # "v": the Loop body's input
            helper.make_node("Mul", ["vb", "k"], ["o2"]),  # "k": the Loop body's initializer
        ],
        ["o2"],
        name="else",
    )
    body = _body(
        [
            helper.make_node("Relu", ["v"], ["t"]),
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("If", ["cond_in"], ["v_out"], then_branch=then_g, else_branch=else_g),
        ],
        ["cond_out", "v_out"],
        inputs=_loop_inputs("v"),
        initializer=[local_k],
    )
    node = helper.make_node("Loop", ["M", "", "v0"], ["vf"], body=body)
    assert set(subgraph_inputs(node)) == {"outer_a", "outer_b"}


def test_names_a_nested_body_defines_are_not_outer_reads() -> None:
    """The nested If's own node outputs and initializers shadow within it."""
    inner_init = numpy_helper.from_array(np.ones(1, np.float32), "inner_w")
    then_g = _body(
        [
            helper.make_node("Mul", ["outer_x", "inner_w"], ["p"]),
            helper.make_node("Neg", ["p"], ["o1"]),
        ],
        ["o1"],
        initializer=[inner_init],
        name="then",
    )
    else_g = _body([helper.make_node("Identity", ["outer_y"], ["o2"])], ["o2"], name="else")
    body = _body(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("If", ["flag"], ["v_out"], then_branch=then_g, else_branch=else_g),
        ],
        ["cond_out", "v_out"],
        inputs=_loop_inputs("v"),
    )
    node = helper.make_node("Loop", ["M", "", "v0"], ["vf"], body=body)
    assert set(subgraph_inputs(node)) == {"flag", "outer_x", "outer_y"}


def test_the_reads_match_what_onnx_runtime_needs() -> None:
    """The names reported for a runnable Loop are exactly the outer tensors the model must
    provide: dropping any one of them from the outer graph makes the model invalid."""
    import onnxruntime as ort

    # The nested If reads the Loop body's carried "v" (not an outer name) and the outer "step".
    then_g = _body([helper.make_node("Add", ["v", "step"], ["o1"])], ["o1"], name="then")
    else_g = _body([helper.make_node("Sub", ["v", "step"], ["o2"])], ["o2"], name="else")
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("If", ["up"], ["v_out"], then_branch=then_g, else_branch=else_g),
        ],
        "body",
        [
            helper.make_tensor_value_info("iter", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v", TensorProto.FLOAT, [2]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_out", TensorProto.FLOAT, [2]),
        ],
    )
    loop = helper.make_node("Loop", ["M", "", "x"], ["y"], body=body)
    assert set(subgraph_inputs(loop)) == {"up", "step"}
    inits = {
        "M": np.array(3, np.int64),
        "up": np.array(True),
        "step": np.array([0.5, -1.0], np.float32),
    }

    def model(skip: str | None) -> bytes:
        graph = helper.make_graph(
            [loop],
            "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
            initializer=[numpy_helper.from_array(v, k) for k, v in inits.items() if k != skip],
        )
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
        return m.SerializeToString()

    sess = ort.InferenceSession(model(None), providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {"x": np.zeros(2, np.float32)})
    np.testing.assert_array_equal(y, np.array([1.5, -3.0], np.float32))
    for name in ("up", "step"):
        with pytest.raises(Exception, match=name):
            ort.InferenceSession(model(name), providers=["CPUExecutionProvider"])
