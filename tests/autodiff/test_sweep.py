"""The reverse sweep: dead branches, accumulation, early stop, intermediate wrt/seeds, errors."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from vjp_helpers import check_vjp, session

from onnxlens.autodiff import build_vjp
from onnxlens.errors import LayerNotFoundError, UnsupportedOperatorError


def _model(nodes, inputs, outputs, inits=(), opset=17):
    g = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info(n, TensorProto.DOUBLE, s) for n, s in inputs],
        [helper.make_tensor_value_info(n, TensorProto.DOUBLE, None) for n in outputs],
        initializer=[numpy_helper.from_array(v, k) for k, v in inits],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)
    return onnx.shape_inference.infer_shapes(m)


def _diamond():
    # x -> a=Relu(x) -> b=Exp(a) ; c=Mul(a, a) ; y = Add(b, c) ; z = Sigmoid(x) (other output)
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="relu"),
        helper.make_node("Exp", ["a"], ["b"], name="exp"),
        helper.make_node("Mul", ["a", "a"], ["c"], name="mul"),
        helper.make_node("Add", ["b", "c"], ["y"], name="add"),
        helper.make_node("Sigmoid", ["x"], ["z"], name="sig"),
    ]
    return _model(nodes, [("x", ["N", 3])], ["y", "z"])


def test_accumulation_and_values():
    check_vjp(_diamond(), {"x": np.array([[0.5, 1.0, 2.0], [0.3, 0.2, 0.9]])})


def test_dead_branch_emits_nothing():
    """Seeding only y: no node of the Sigmoid branch is differentiated, no zero tensors made."""
    vg = build_vjp(_diamond(), ["y"], ["x"])
    new = [n for n in vg.proto.graph.node if n.name.startswith("grad/")]
    ops = [n.op_type for n in new]
    assert "ConstantOfShape" not in ops and "Sigmoid" not in ops
    # a gets 3 contributions (Exp, Mul twice): one Sum; nothing else accumulates
    assert ops.count("Sum") == 1 and ops.count("Add") == 0
    check_vjp(_diamond(), {"x": np.array([[0.5, 1.0, 2.0]])}, seeds=["y"])


def test_stops_where_nothing_is_asked_further_back():
    """wrt an intermediate: nodes before it are not differentiated."""
    vg = build_vjp(_diamond(), ["y"], ["a"])
    assert not any(n.op_type == "Where" for n in vg.proto.graph.node)  # Relu's backward absent
    sess = session(vg.proto)
    x = np.array([[0.5, -1.0, 2.0]])
    c = np.array([[1.0, 1.0, 1.0]])
    (g,) = sess.run([vg.grad_outputs["a"]], {"x": x, vg.seed_inputs["y"]: c})
    a = np.maximum(x, 0)
    np.testing.assert_allclose(g, np.exp(a) + 2 * a)


def test_primal_outputs_keep_and_batch_dynamic():
    vg = build_vjp(_diamond(), ["y"], ["x", "a"], keep=["a", "relu"])
    assert vg.primal_outputs == ["y", "z"] and vg.keep == ["a"]
    sess = session(vg.proto)
    for n in (1, 4):
        x = np.random.default_rng(n).standard_normal((n, 3))
        outs = sess.run(None, {"x": x, vg.seed_inputs["y"]: np.ones((n, 3))})
        assert [o.shape[0] for o in outs] == [n] * len(outs)


def test_intermediate_seed_and_two_seeds():
    m = _diamond()
    check_vjp(m, {"x": np.array([[0.5, 1.0, 2.0]])}, seeds=["c", "z"])


def test_unsupported_op_names_op_node_and_path():
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="r1"),
        helper.make_node("Exp", ["a"], ["b"], name="e1"),
        helper.make_node("Hardmax", ["b"], ["y"], name="n7"),
    ]
    m = _model(nodes, [("x", ["N", 3])], ["y"])
    with pytest.raises(UnsupportedOperatorError) as exc:
        build_vjp(m, ["y"], ["x"])
    msg = str(exc.value)
    assert (
        "Hardmax" in msg and "'n7'" in msg and "x -> Relu 'r1' -> Exp 'e1' -> Hardmax 'n7'" in msg
    )


def test_shape_only_branch_needs_no_rule():
    """Shape -> ConstantOfShape carries no gradient: no rule needed, none asked for."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node(
            "ConstantOfShape",
            ["s"],
            ["o"],
            value=helper.make_tensor("v", TensorProto.DOUBLE, [1], [2.0]),
        ),
        helper.make_node("Mul", ["x", "o"], ["y"]),
    ]
    m = _model(nodes, [("x", ["N", 3])], ["y"])
    check_vjp(m, {"x": np.array([[0.5, 1.0, 2.0]])})


def test_unconnected_wrt_gets_zeros():
    vg = build_vjp(_diamond(), ["z"], ["a"])
    (g,) = session(vg.proto).run(
        [vg.grad_outputs["a"]], {"x": np.ones((2, 3)), vg.seed_inputs["z"]: np.ones((2, 3))}
    )
    assert g.shape == (2, 3) and not g.any()


def test_unknown_names():
    with pytest.raises(LayerNotFoundError, match="did you mean"):
        build_vjp(_diamond(), ["yy"], ["x"])


def test_input_not_mutated():
    m = _diamond()
    before = m.SerializeToString()
    build_vjp(m, ["y"], ["x"])
    assert m.SerializeToString() == before


def _split_model():
    # x -> Split -> p, q, r ; y = Exp(p) ; z = Sigmoid(q) (r feeds nothing) ; e = Exp(x) (other path)
    nodes = [
        helper.make_node("Split", ["x"], ["p", "q", "r"], axis=1, num_outputs=3, name="split"),
        helper.make_node("Exp", ["p"], ["y"], name="exp"),
        helper.make_node("Sigmoid", ["q"], ["z"], name="sig"),
        helper.make_node("Exp", ["x"], ["e"], name="exp_x"),
    ]
    return _model(nodes, [("x", ["N", 6])], ["y", "z", "e"], opset=18)


@pytest.mark.parametrize(("seeds", "zeros"), [(["y"], 2), (["y", "z"], 1), (["e"], 0)])
def test_zeros_only_for_the_other_outputs_of_a_live_node(seeds, zeros):
    """Split is live when one part has a cotangent: the parts without one get zeros (rules never
    see an absent cotangent); when no part has one (only e seeded) Split is a dead branch and no
    zeros are made at all."""
    vg = build_vjp(_split_model(), seeds, ["x"])
    ops = [n.op_type for n in vg.proto.graph.node if n.name.startswith("grad/")]
    assert ops.count("ConstantOfShape") == zeros
    assert ("Concat" in ops) == ("e" not in seeds)
    check_vjp(_split_model(), {"x": np.linspace(-1.0, 1.0, 12).reshape(2, 6)}, seeds=seeds)


@pytest.mark.parametrize("seeds", [["mean"], ["y", "inv"]])
def test_a_cotangent_on_an_output_the_rule_does_not_take_is_refused(seeds):
    """LayerNormalization's rule differentiates the normalised output only; a gradient reaching
    its Mean or InvStdDev output is an error naming the node and the output, not ignored."""
    nodes = [
        helper.make_node(
            "LayerNormalization", ["x", "s"], ["y", "mean", "inv"], axis=-1, name="ln7"
        )
    ]
    m = _model(nodes, [("x", ["N", 4])], ["y", "mean", "inv"], inits=[("s", np.ones(4))])
    with pytest.raises(UnsupportedOperatorError, match=r"'ln7'.*output 0 only.*output \d"):
        build_vjp(m, seeds, ["x"])
