"""graph.walk.ancestors: the one backward reachability walk, against a brute-force reference
(repeat "a node whose output is reached, and not stopped, adds its inputs" until nothing changes)
on hand-built graphs with If nodes and on random DAGs with If nodes reading outer tensors."""

from __future__ import annotations

from collections.abc import Collection, Iterable

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxlens.graph.walk import ancestors, prune


def _body_names(g: onnx.GraphProto) -> tuple[set[str], set[str]]:
    """(names read, names defined) anywhere in a body, nested bodies included."""
    used: set[str] = set()
    defined = {i.name for i in g.input} | {t.name for t in g.initializer}
    for n in g.node:
        used |= {i for i in n.input if i}
        defined |= {o for o in n.output if o}
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                u, d = _body_names(a.g)
                used |= u
                defined |= d
    return used, defined


def _outer_reads(node: onnx.NodeProto) -> set[str]:
    # Names are unique across scopes in these graphs, so "read inside, defined nowhere inside"
    # is exactly the set of outer tensors a body needs.
    reads: set[str] = set()
    for a in node.attribute:
        if a.type == onnx.AttributeProto.GRAPH:
            used, defined = _body_names(a.g)
            reads |= used - defined
    return reads


def _reference(
    graph: onnx.GraphProto,
    tensors: Iterable[str],
    stop: Collection[str] = (),
    through_subgraphs: bool = True,
) -> tuple[set[str], list[int]]:
    reached = {t for t in tensors if t}
    nodes: set[int] = set()
    changed = True
    while changed:
        changed = False
        for i, n in enumerate(graph.node):
            if i in nodes or not any(o in reached and o not in stop for o in n.output):
                continue
            nodes.add(i)
            reached |= {x for x in n.input if x}
            if through_subgraphs:
                reached |= _outer_reads(n)
            changed = True
    return reached, sorted(nodes)


def _vi(name: str) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, [2])


def _branch(name: str, reads: str, out: str) -> onnx.GraphProto:
    return helper.make_graph([helper.make_node("Identity", [reads], [out])], name, [], [_vi(out)])


def _if_graph() -> onnx.GraphProto:
    """x -> a = Relu(x); b = Neg(x); y = If(flag) then a else w (an initializer); z = Exp(b)."""
    then_g = _branch("then", "a", "t_out")
    else_g = _branch("else", "w", "e_out")
    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["x"], ["a"]),
            helper.make_node("Neg", ["x"], ["b"]),
            helper.make_node("If", ["flag"], ["y"], then_branch=then_g, else_branch=else_g),
            helper.make_node("Exp", ["b"], ["z"]),
        ],
        "if",
        [_vi("x")],
        [_vi("y"), _vi("z")],
        initializer=[
            numpy_helper.from_array(np.ones(2, np.float32), "w"),
            numpy_helper.from_array(np.array(True), "flag"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    onnx.checker.check_model(model)
    return model.graph


def test_an_if_branch_reading_an_outer_tensor_pulls_in_its_producer() -> None:
    g = _if_graph()
    tensors, nodes = ancestors(g, ["y"])
    assert tensors == {"y", "flag", "a", "x", "w"}
    assert nodes == [0, 2]  # Relu (read by the then branch) and the If; not Neg, not Exp
    assert (tensors, nodes) == _reference(g, ["y"])


def test_without_subgraphs_only_the_if_node_inputs_count() -> None:
    g = _if_graph()
    assert ancestors(g, ["y"], through_subgraphs=False) == ({"y", "flag"}, [2])
    assert ancestors(g, ["y"], through_subgraphs=False) == _reference(
        g, ["y"], through_subgraphs=False
    )


def test_a_stop_tensor_is_reached_but_not_walked_through() -> None:
    g = _if_graph()
    tensors, nodes = ancestors(g, ["y", "z"], stop={"a"})
    assert "a" in tensors and 0 not in nodes  # Relu is cut off at its output
    assert tensors == {"y", "z", "flag", "a", "w", "b", "x"} and nodes == [1, 2, 3]
    assert (tensors, nodes) == _reference(g, ["y", "z"], stop={"a"})


def test_a_stopped_output_keeps_its_node_when_another_output_is_needed() -> None:
    g = helper.make_graph(
        [
            helper.make_node("Split", ["x"], ["p", "q"], axis=0, num_outputs=2),
            helper.make_node("Relu", ["p"], ["r"]),
            helper.make_node("Add", ["r", "q"], ["y"]),
        ],
        "split",
        [_vi("x")],
        [_vi("y")],
    )
    # q is stopped, but Split is still needed for p (through Relu), so x is reached
    assert ancestors(g, ["y"], stop={"q"}) == ({"y", "r", "q", "p", "x"}, [0, 1, 2])
    assert ancestors(g, ["y"], stop={"q"}) == _reference(g, ["y"], stop={"q"})
    # stopping r cuts Relu and with it the only path that needed p
    assert ancestors(g, ["y"], stop={"r", "q"}) == ({"y", "r", "q"}, [2])
    assert ancestors(g, ["y"], stop={"r", "q"}) == _reference(g, ["y"], stop={"r", "q"})


def test_a_nested_if_reading_its_enclosing_body_adds_no_outer_names() -> None:
    """Inner reads of the enclosing body's own tensor ("mid") are no outer tensors."""
    inner = helper.make_node(
        "If",
        ["flag"],
        ["o_out"],
        then_branch=_branch("in_then", "mid", "it"),
        else_branch=_branch("in_else", "x", "ie"),
    )
    then_g = helper.make_graph(
        [helper.make_node("Neg", ["a"], ["mid"]), inner], "then", [], [_vi("o_out")]
    )
    g = helper.make_graph(
        [
            helper.make_node("Relu", ["x"], ["a"]),
            helper.make_node(
                "If", ["flag"], ["y"], then_branch=then_g, else_branch=_branch("else", "x", "e")
            ),
        ],
        "nested",
        [_vi("x"), helper.make_tensor_value_info("flag", TensorProto.BOOL, [])],
        [_vi("y")],
    )
    tensors, nodes = ancestors(g, ["y"])
    assert tensors == {"y", "flag", "a", "x"} and nodes == [0, 1]
    assert (tensors, nodes) == _reference(g, ["y"])


def _random_graph(rng: np.random.Generator, n_nodes: int) -> onnx.GraphProto:
    """A random DAG over unique names: some nodes with two outputs, absent optional inputs, and If
    nodes whose branches read earlier outer tensors."""
    names = ["in0", "in1", "w0"]
    nodes = []
    for i in range(n_nodes):
        outs = [f"t{i}_{j}" for j in range(1 + int(rng.random() < 0.3))]
        if rng.random() < 0.2:
            a, b = (names[int(k)] for k in rng.integers(0, len(names), 2))
            node = helper.make_node(
                "If",
                [names[int(rng.integers(len(names)))]],
                outs[:1],
                then_branch=_branch(f"then{i}", a, f"then{i}_out"),
                else_branch=_branch(f"else{i}", b, f"else{i}_out"),
            )
            outs = outs[:1]
        else:
            k = int(rng.integers(1, 4))
            ins = [names[int(j)] for j in rng.integers(0, len(names), k)]
            if rng.random() < 0.2:
                ins.insert(1, "")
            node = helper.make_node("Custom", ins, outs, domain="test")
        nodes.append(node)
        names += outs
    return helper.make_graph(nodes, "random", [_vi("in0"), _vi("in1")], [_vi(names[-1])])


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("through", [True, False])
def test_random_graphs_match_the_reference(seed: int, through: bool) -> None:
    rng = np.random.default_rng(seed)
    g = _random_graph(rng, 25)
    produced = [o for n in g.node for o in n.output]
    for _ in range(5):
        start = [str(t) for t in rng.choice(produced, 3, replace=False)]
        stop = {str(t) for t in rng.choice(produced, int(rng.integers(0, 4)), replace=False)}
        got = ancestors(g, start, stop=stop, through_subgraphs=through)
        assert got == _reference(g, start, stop=stop, through_subgraphs=through)


def test_prune_keeps_what_the_outputs_need() -> None:
    """Against onnx's own extractor (onnx.utils.Extractor): the same nodes, the initializers
    they read, and a graph that still checks and runs the same."""
    w = numpy_helper.from_array(np.ones((2,), np.float32), "w")
    unused = numpy_helper.from_array(np.ones((3,), np.float32), "unused")
    g = helper.make_graph(
        [
            helper.make_node("Mul", ["x", "w"], ["a"], name="keep1"),
            helper.make_node("Relu", ["a"], ["b"], name="keep2"),
            helper.make_node("Add", ["a", "unused"], ["c"], name="drop1"),
            helper.make_node("Neg", ["c"], ["d"], name="drop2"),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("b", TensorProto.FLOAT, [2])],
        [w, unused],
        value_info=[helper.make_tensor_value_info("c", TensorProto.FLOAT, [3])],
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    ref = onnx.utils.Extractor(model).extract_model(["x"], ["b"])
    prune(model.graph)
    assert [n.name for n in model.graph.node] == [n.name for n in ref.graph.node]
    assert [t.name for t in model.graph.initializer] == ["w"]
    assert not model.graph.value_info
    onnx.checker.check_model(model)
