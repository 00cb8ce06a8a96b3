"""graph.fold.fold_constants against plain ONNX Runtime on the unfolded model.

Each model mixes constant sub-graphs (what exporters leave behind) with input-dependent ones;
the folded model must give ORT's outputs on the original, exactly, with fewer nodes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxlens.graph.fold import MAX_FOLDED_ELEMENTS, fold_constants

IR_VERSION = 10  # ORT 1.31 reads IR <= 13; onnx 1.23 writes 14 by default


def _const(name: str, value: np.ndarray) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(value), name=name)


def _model(
    nodes: Sequence[onnx.NodeProto],
    inputs: Sequence[onnx.ValueInfoProto],
    outputs: Sequence[str | onnx.ValueInfoProto],
    initializer: Sequence[onnx.TensorProto] = (),
    opset: int = 17,
    ir_version: int = IR_VERSION,
) -> onnx.ModelProto:
    """A checked model; outputs given by name get the types shape inference finds (ORT needs
    declared output types, as exporters write them)."""
    graph = helper.make_graph(
        list(nodes),
        "fold_test",
        list(inputs),
        [helper.make_empty_tensor_value_info(o) if isinstance(o, str) else o for o in outputs],
        initializer=list(initializer),
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir_version
    )
    inferred = onnx.shape_inference.infer_shapes(model)
    del model.graph.output[:]
    model.graph.output.extend(inferred.graph.output)
    onnx.checker.check_model(model)
    return model


def _x(shape: Sequence[int | str], name: str = "x") -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


def _run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def _ops(model: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in model.graph.node]


def _assert_same_outputs(
    model: onnx.ModelProto, folded: onnx.ModelProto, feeds: dict[str, np.ndarray]
) -> None:
    want = _run(model, feeds)
    got = _run(folded, feeds)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g.dtype == w.dtype
        np.testing.assert_array_equal(g, w)


def _initializer(model: onnx.ModelProto, name: str) -> np.ndarray:
    t = next(t for t in model.graph.initializer if t.name == name)
    return numpy_helper.to_array(t)


def _shape_chain_model() -> onnx.ModelProto:
    """Reshape(x, Concat([-1], Unsqueeze(Gather(Shape(w), 1)))): the target is [-1, 6]."""
    nodes = [
        _const("w", np.zeros((2, 6), np.float32)),
        helper.make_node("Shape", ["w"], ["w_shape"]),
        _const("one", np.array(1, np.int64)),
        helper.make_node("Gather", ["w_shape", "one"], ["w_cols"], axis=0),
        _const("axes0", np.array([0], np.int64)),
        helper.make_node("Unsqueeze", ["w_cols", "axes0"], ["w_cols_1d"]),
        _const("minus1", np.array([-1], np.int64)),
        helper.make_node("Concat", ["minus1", "w_cols_1d"], ["target"], axis=0),
        helper.make_node("Reshape", ["x", "target"], ["y"]),
    ]
    return _model(nodes, [_x(["N", 3, 4])], ["y"])


@pytest.mark.parametrize("batch", [1, 5])
def test_shape_chain_folds_to_the_reshape_target(batch: int) -> None:
    model = _shape_chain_model()
    folded = fold_constants(model)
    assert _ops(folded) == ["Reshape"]
    np.testing.assert_array_equal(_initializer(folded, "target"), np.array([-1, 6], np.int64))
    onnx.checker.check_model(folded)
    x = np.random.default_rng(batch).standard_normal((batch, 3, 4)).astype(np.float32)
    _assert_same_outputs(model, folded, {"x": x})
    assert _run(folded, {"x": x})[0].shape == (2 * batch, 6)


def test_constant_arithmetic_folds() -> None:
    # Float and integer arithmetic on constants, the way exporters spell scales and pads.
    nodes = [
        _const("a", np.array([1.0, 2.0, 3.0, 4.0], np.float32)),
        _const("b", np.array(0.5, np.float32)),
        helper.make_node("Mul", ["a", "b"], ["ab"]),
        helper.make_node("Sqrt", ["ab"], ["root"]),
        helper.make_node("Sub", ["root", "b"], ["scale"]),
        _const("k", np.array([3, 5], np.int64)),
        _const("two", np.array(2, np.int64)),
        helper.make_node("Mul", ["k", "two"], ["k2"]),
        helper.make_node("Sub", ["k2", "two"], ["pads"]),  # [4, 8]
        helper.make_node("Mul", ["x", "scale"], ["y"]),
        helper.make_node("Cast", ["pads"], ["pads_f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["pads_f"], ["pad_sum"], keepdims=0),
        helper.make_node("Add", ["y", "pad_sum"], ["z"]),
    ]
    model = _model(nodes, [_x(["N", 4])], ["z"])
    folded = fold_constants(model)
    assert _ops(folded) == ["Mul", "Add"]
    np.testing.assert_allclose(
        _initializer(folded, "scale"), np.sqrt([0.5, 1.0, 1.5, 2.0]) - 0.5, rtol=1e-6
    )
    assert float(_initializer(folded, "pad_sum")) == 12.0
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    _assert_same_outputs(model, folded, {"x": x})


@pytest.mark.parametrize("batch", [1, 5])
def test_nodes_that_read_the_input_are_not_folded(batch: int) -> None:
    """Shape(x) depends on the batch fed at run time even where the graph states a shape."""
    nodes = [
        helper.make_node("Shape", ["x"], ["x_shape"]),
        _const("zero", np.array(0, np.int64)),
        helper.make_node("Gather", ["x_shape", "zero"], ["n"], axis=0),
        _const("axes0", np.array([0], np.int64)),
        helper.make_node("Unsqueeze", ["n", "axes0"], ["n_1d"]),
        _const("twelve", np.array([12], np.int64)),
        helper.make_node("Concat", ["n_1d", "twelve"], ["target"], axis=0),
        helper.make_node("Reshape", ["x", "target"], ["y"]),
    ]
    model = _model(nodes, [_x(["N", 3, 4])], ["y"])
    folded = fold_constants(model)
    # The Constant nodes become initializers; every node on the path from x stays.
    assert _ops(folded) == ["Shape", "Gather", "Unsqueeze", "Concat", "Reshape"]
    x = np.random.default_rng(batch).standard_normal((batch, 3, 4)).astype(np.float32)
    _assert_same_outputs(model, folded, {"x": x})
    assert _run(folded, {"x": x})[0].shape == (batch, 12)


def test_input_model_is_not_mutated() -> None:
    model = _shape_chain_model()
    before = model.SerializeToString()
    folded = fold_constants(model)
    assert model.SerializeToString() == before
    assert len(folded.graph.node) < len(model.graph.node)


def test_nothing_to_fold_keeps_the_graph() -> None:
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Neg", ["r"], ["y"])]
    model = _model(nodes, [_x(["N", 3])], ["y"])
    folded = fold_constants(model)
    assert folded.SerializeToString() == model.SerializeToString()


def test_constant_graph_output_is_folded() -> None:
    """An output that is itself a constant (a shape an exporter returns) becomes an initializer."""
    nodes = [
        _const("w", np.zeros((2, 6), np.float32)),
        helper.make_node("Shape", ["w"], ["w_shape"]),
        helper.make_node("Relu", ["x"], ["y"]),
    ]
    model = _model(nodes, [_x(["N", 3])], ["y", "w_shape"])
    folded = fold_constants(model)
    assert _ops(folded) == ["Relu"]
    x = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    _assert_same_outputs(model, folded, {"x": x})


def test_random_ops_are_never_folded() -> None:
    # A scale far below float32's resolution at the mean makes every draw equal the mean, so
    # outputs can still be compared exactly (scale=0 trips an assertion inside ORT).
    nodes = [
        helper.make_node("RandomNormal", [], ["noise"], shape=[2, 3], mean=1.5, scale=1e-30),
        helper.make_node("Add", ["x", "noise"], ["y"]),
        *_shape_chain_model().graph.node[:-1],
        helper.make_node("Reshape", ["y", "target"], ["z"]),
    ]
    model = _model(nodes, [_x([2, 3])], ["z"])
    folded = fold_constants(model)
    assert _ops(folded) == ["RandomNormal", "Add", "Reshape"]
    x = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    _assert_same_outputs(model, folded, {"x": x})


def test_a_large_folded_tensor_keeps_its_nodes() -> None:
    n = MAX_FOLDED_ELEMENTS + 1
    nodes = [
        _const("big_shape", np.array([1, n], np.int64)),
        helper.make_node(
            "ConstantOfShape",
            ["big_shape"],
            ["big"],
            value=numpy_helper.from_array(np.array([0.25], np.float32)),
        ),
        helper.make_node("Add", ["x", "big"], ["y"]),
    ]
    model = _model(nodes, [_x(["N", n])], ["y"])
    folded = fold_constants(model)
    assert "ConstantOfShape" in _ops(folded)
    assert all(
        numpy_helper.to_array(t).size <= MAX_FOLDED_ELEMENTS for t in folded.graph.initializer
    )
    x = np.random.default_rng(0).standard_normal((2, n)).astype(np.float32)
    _assert_same_outputs(model, folded, {"x": x})


def test_a_large_intermediate_reduced_to_a_small_constant_folds() -> None:
    """Only the folded results count against the size bound, not what they were computed from."""
    n = MAX_FOLDED_ELEMENTS + 1
    nodes = [
        _const("big_shape", np.array([1, n], np.int64)),
        helper.make_node(
            "ConstantOfShape",
            ["big_shape"],
            ["big"],
            value=numpy_helper.from_array(np.array([0.25], np.float32)),
        ),
        helper.make_node("ReduceMax", ["big"], ["m"], keepdims=0),
        helper.make_node("Add", ["x", "m"], ["y"]),
    ]
    model = _model(nodes, [_x(["N", 3])], ["y"])
    folded = fold_constants(model)
    assert _ops(folded) == ["Add"]
    assert float(_initializer(folded, "m")) == 0.25
    x = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    _assert_same_outputs(model, folded, {"x": x})


def _branch(name: str, op: str, inputs: list[str]) -> onnx.GraphProto:
    return helper.make_graph(
        [helper.make_node(op, inputs, [f"{name}_out"])],
        name,
        [],
        [helper.make_tensor_value_info(f"{name}_out", TensorProto.FLOAT, [2, 3])],
    )


def test_if_on_the_input_stays_and_the_rest_folds() -> None:
    """If nodes are never folded (their bodies may read outer tensors); constant chains elsewhere
    in the graph still are."""
    nodes = [
        helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
        _const("zero", np.array(0.0, np.float32)),
        helper.make_node("Greater", ["s", "zero"], ["cond"]),
        helper.make_node(
            "If",
            ["cond"],
            ["branch"],
            then_branch=_branch("then", "Relu", ["x"]),
            else_branch=_branch("else", "Neg", ["x"]),
        ),
        _const("c", np.array([1.0, 2.0, 3.0], np.float32)),
        helper.make_node("Mul", ["c", "c"], ["cc"]),
        helper.make_node("Add", ["branch", "cc"], ["y"]),
    ]
    model = _model(nodes, [_x([2, 3])], ["y"])
    folded = fold_constants(model)
    assert _ops(folded) == ["ReduceSum", "Greater", "If", "Add"]
    rng = np.random.default_rng(0)
    for x in (np.abs(rng.standard_normal((2, 3))), -np.abs(rng.standard_normal((2, 3)))):
        _assert_same_outputs(model, folded, {"x": x.astype(np.float32)})


def test_initializers_read_by_an_if_body_survive_folding() -> None:
    nodes = [
        helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
        helper.make_node("Greater", ["s", "zero"], ["cond"]),
        helper.make_node(
            "If",
            ["cond"],
            ["branch"],
            then_branch=_branch("then", "Add", ["x", "w"]),
            else_branch=_branch("else", "Sub", ["x", "w"]),
        ),
        _const("c", np.array([1.0, 2.0, 3.0], np.float32)),
        helper.make_node("Mul", ["c", "c"], ["cc"]),
        helper.make_node("Add", ["branch", "cc"], ["y"]),
    ]
    inits = [
        numpy_helper.from_array(np.full((2, 3), 0.5, np.float32), "w"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
    ]
    model = _model(nodes, [_x([2, 3])], ["y"], initializer=inits)
    folded = fold_constants(model)
    assert "w" in {t.name for t in folded.graph.initializer}
    x = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    _assert_same_outputs(model, folded, {"x": x})


def test_if_with_a_constant_condition_does_not_block_folding() -> None:
    nodes = [
        _const("cond", np.array(True)),
        helper.make_node(
            "If",
            ["cond"],
            ["branch"],
            then_branch=_branch("then", "Relu", ["x"]),
            else_branch=_branch("else", "Neg", ["x"]),
        ),
        _const("c", np.array([1.0, 2.0, 3.0], np.float32)),
        helper.make_node("Mul", ["c", "c"], ["cc"]),
        helper.make_node("Add", ["branch", "cc"], ["y"]),
    ]
    model = _model(nodes, [_x([2, 3])], ["y"])
    folded = fold_constants(model)
    x = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    _assert_same_outputs(model, folded, {"x": x})  # holds today: nothing was folded
    assert "Mul" not in _ops(folded)
    assert _ops(folded) == ["If", "Add"]


def test_ir3_model_folds_to_a_valid_model() -> None:
    w = numpy_helper.from_array(np.ones((3, 2), np.float32), "w")
    nodes = [
        helper.make_node("Shape", ["w"], ["s"]),
        helper.make_node("Reshape", ["x", "s"], ["y"]),
    ]
    model = _model(
        nodes,
        [_x([2, 3]), helper.make_tensor_value_info("w", TensorProto.FLOAT, [3, 2])],
        [_x([3, 2], "y")],
        initializer=[w],
        opset=8,
        ir_version=3,
    )
    folded = fold_constants(model)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    _assert_same_outputs(model, folded, {"x": x})
    onnx.checker.check_model(folded)
