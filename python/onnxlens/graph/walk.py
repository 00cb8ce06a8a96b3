"""The one backward reachability walk: what a set of tensors is computed from.

The VJP sweep (which nodes a seed depends on), the head of a layer (the nodes between it and the
outputs) and the mining pruner (the nodes the reductions need) all ask this question; control-flow
nodes count the outer tensors their If/Loop/Scan bodies read (`layers.subgraph_inputs`) as inputs,
since a body reads them without listing them on the node.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

import onnx

from .layers import subgraph_inputs


def ancestors(
    graph: onnx.GraphProto,
    tensors: Iterable[str],
    stop: Collection[str] = frozenset(),
    through_subgraphs: bool = True,
) -> tuple[set[str], list[int]]:
    """(reached tensors, producing node indices in graph order) walking back from `tensors`.

    The reached tensors are `tensors` and everything they are computed from: node outputs,
    graph inputs, initializers (and names nothing in the graph defines, which end the walk like
    inputs). A tensor in `stop` is reached but not walked through: its producer is not part of
    the result unless another reached tensor needs it. With `through_subgraphs`, a node's
    implicit inputs (outer names its subgraphs read) are walked like its inputs; without, they
    are not (the walk then treats control-flow nodes as opaque on those edges). Empty names
    (absent optional inputs) are skipped.
    """
    producer = {o: i for i, n in enumerate(graph.node) for o in n.output if o}
    reached: set[str] = set()
    nodes: set[int] = set()
    stack = [t for t in tensors if t]
    while stack:
        t = stack.pop()
        if t in reached:
            continue
        reached.add(t)
        i = producer.get(t)
        if t in stop or i is None or i in nodes:
            continue
        nodes.add(i)
        node = graph.node[i]
        stack.extend(n for n in node.input if n)
        if through_subgraphs:
            stack.extend(subgraph_inputs(node))
    return reached, sorted(nodes)


def prune(graph: onnx.GraphProto) -> None:
    """Drop, in place, the nodes the graph's outputs do not need, and the initializers and
    value_info entries nothing left uses or produces. (ONNX Runtime runs every node of a graph,
    whichever outputs a run fetches.)"""
    needed = [graph.node[i] for i in ancestors(graph, [o.name for o in graph.output])[1]]
    del graph.node[:]
    graph.node.extend(needed)
    used = {i for n in graph.node for i in (*n.input, *subgraph_inputs(n))}
    used |= {o.name for o in graph.output}
    keep_inits = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep_inits)
    produced = {o for n in graph.node for o in n.output}
    keep_vi = [v for v in graph.value_info if v.name in produced]
    del graph.value_info[:]
    graph.value_info.extend(keep_vi)
