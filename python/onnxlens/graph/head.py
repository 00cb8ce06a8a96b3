"""The head of a layer: the sub-graph that computes the model outputs from one tensor."""

from __future__ import annotations

import onnx

from .layers import value_infos
from .walk import ancestors

_GRAPH_ATTRS = (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)


def head_graph(
    proto: onnx.ModelProto, tensor: str, allow_input: bool = False
) -> onnx.ModelProto | None:
    """The sub-graph computing the model outputs from `tensor` (it becomes the first input).

    When the outputs also depend on the input through another path (a skip connection around
    `tensor`), None -- or, with `allow_input`, a graph that takes those runtime inputs too (after
    `tensor`), so `tensor` can be overridden while the rest is computed as usual. Used to
    differentiate or re-run only what follows a layer."""
    g = proto.graph
    inits = {t.name for t in g.initializer}
    runtime_inputs = {v.name for v in g.input if v.name not in inits}
    seen, keep = ancestors(g, [o.name for o in g.output], stop={tensor})
    reached = (seen & runtime_inputs) - {tensor}
    if reached and not allow_input:
        return None
    # Sub-graphs (If/Loop bodies) would need their outer reads cut at `tensor` too.
    if any(a.type in _GRAPH_ATTRS for i in keep for a in g.node[i].attribute):
        return None
    infos = value_infos(proto)
    vi = infos.get(tensor)
    if vi is None or not vi.type.tensor_type.elem_type:
        return None
    nodes = [g.node[i] for i in keep]
    used = {i for n in nodes for i in n.input}
    inp = onnx.ValueInfoProto()
    inp.CopyFrom(vi)
    if inp.type.tensor_type.HasField("shape") and inp.type.tensor_type.shape.dim:
        d0 = inp.type.tensor_type.shape.dim[0]
        d0.Clear()
        d0.dim_param = "batch"
    graph = onnx.helper.make_graph(
        nodes,
        (g.name or "model") + "_head",
        [inp] + [v for v in g.input if v.name in reached],
        list(g.output),
        initializer=[t for t in g.initializer if t.name in used],
        value_info=[v for v in g.value_info if v.name in seen - inits - {tensor}],
    )
    head = onnx.helper.make_model(
        graph, opset_imports=list(proto.opset_import), ir_version=proto.ir_version
    )
    head.functions.extend(proto.functions)
    return head
