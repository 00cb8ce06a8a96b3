"""Layers: every node output tensor, named by its tensor name, with op type, shape and parameters."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
import onnx

from ..errors import LayerNotFoundError

Dim = int | str | None
Shape = tuple[Dim, ...] | None


@dataclass(frozen=True)
class Layer:
    """One tensor produced by a node. `shape` dims are ints, symbolic names (str) or None (unknown)."""

    name: str
    op: str
    node: str
    shape: Shape
    params: int
    dtype: str = "float32"
    #: Axis letters of a rank-4 tensor ("NCHW", "NHWC", ...; `graph.layout`), None when unknown.
    layout: str | None = None
    #: The framework's layer path the exporter kept in the node name ("conv2d_4",
    #: "layer4/layer4.1/conv2"), None when the node has no scope.
    framework: str | None = None

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "op": self.op,
            "node": self.node,
            "shape": list(self.shape) if self.shape is not None else None,
            "params": self.params,
            "dtype": self.dtype,
            "layout": self.layout,
            "framework": self.framework,
        }

    @property
    def spatial_axes(self) -> tuple[int, int]:
        """(H axis, W axis) of a rank-4 tensor: from its layout, (2, 3) when unknown."""
        if self.layout is not None and len(self.layout) == 4:
            return self.layout.index("H"), self.layout.index("W")
        return 2, 3

    @property
    def spatial(self) -> bool:
        """True for rank-4 feature maps whose H and W (by the tensor's layout; the last two dims
        when unknown) are known and > 1."""
        if self.shape is None or len(self.shape) != 4:
            return False
        return all(isinstance(self.shape[a], int) and self.shape[a] > 1 for a in self.spatial_axes)  # type: ignore[operator]


def value_dims(vi: onnx.ValueInfoProto) -> Shape:
    t = vi.type.tensor_type
    if not t.HasField("shape"):
        return None
    out: list[Dim] = []
    for d in t.shape.dim:
        if d.HasField("dim_value"):
            out.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            out.append(d.dim_param)
        else:
            out.append(None)
    return tuple(out)


def _dtype(vi: onnx.ValueInfoProto) -> str:
    et = vi.type.tensor_type.elem_type
    if not et:
        return "unknown"
    return str(np.dtype(onnx.helper.tensor_dtype_to_np_dtype(et)))


def value_infos(model: onnx.ModelProto) -> dict[str, onnx.ValueInfoProto]:
    g = model.graph
    infos = {v.name: v for v in g.value_info}
    infos.update({v.name: v for v in g.input})
    infos.update({v.name: v for v in g.output})
    return infos


def tensor_shape(model: onnx.ModelProto, name: str) -> Shape:
    vi = value_infos(model).get(name)
    return value_dims(vi) if vi is not None else None


def input_dependent(model: onnx.ModelProto) -> set[str]:
    """Tensors whose value depends on a runtime input (the rest are constants exporters left unfolded)."""
    g = model.graph
    inits = {t.name for t in g.initializer}
    live = {v.name for v in g.input if v.name not in inits}
    for node in g.node:  # nodes are topologically sorted (checked by onnx.checker)
        # an If/Loop body may read an input-dependent tensor of the outer graph directly
        if any(i in live for i in [*node.input, *subgraph_inputs(node)] if i):
            live.update(o for o in node.output if o)
    return live


def shape_only(model: onnx.ModelProto) -> set[str]:
    """Input-dependent tensors whose value depends on the input's shape alone: Shape/Size and the
    arithmetic exporters build on them (Gather, Cast, Unsqueeze, Concat of dims for a Reshape or
    Resize). Shape plumbing, not layers."""
    g = model.graph
    inits = {t.name for t in g.initializer}
    values = {v.name for v in g.input if v.name not in inits}
    for node in g.node:
        if node.op_type in ("Shape", "Size"):
            continue
        if any(i in values for i in [*node.input, *subgraph_inputs(node)] if i):
            values.update(o for o in node.output if o)
    return input_dependent(model) - values


def list_layers(model: onnx.ModelProto) -> list[Layer]:
    """Every node output that depends on the input, in graph order.

    Constant sub-graphs (Constant nodes, padding arithmetic exporters leave unfolded) are not
    layers. Parameters: sizes of the node's initializer inputs, each weight counted once at its
    first use (shared weights are not double counted)."""
    g = model.graph
    # Parameters are float tensors of rank >= 1; scalars (Clip bounds, eps) and integer tensors
    # (pads, shapes, indices) are configuration, not weights.
    float_types = {
        onnx.TensorProto.FLOAT,
        onnx.TensorProto.DOUBLE,
        onnx.TensorProto.FLOAT16,
        onnx.TensorProto.BFLOAT16,
    }
    inits = {
        t.name: int(np.prod(t.dims, dtype=np.int64))
        for t in g.initializer
        if t.data_type in float_types and len(t.dims) >= 1
    }
    from .layout import tensor_layouts  # graph.layout imports this module
    from .naming import framework_layers

    infos = value_infos(model)
    live = input_dependent(model)
    layouts = tensor_layouts(model)
    paths = framework_layers(model)
    counted: set[str] = set()
    layers: list[Layer] = []
    for i, node in enumerate(g.node):
        if not any(o in live for o in node.output):
            continue
        params = 0
        for name in node.input:
            if name in inits and name not in counted:
                counted.add(name)
                params += inits[name]
        node_name = node.name or f"{node.op_type}_{i}"
        for j, out in enumerate(node.output):
            if not out:
                continue
            vi = infos.get(out)
            layers.append(
                Layer(
                    name=out,
                    op=node.op_type,
                    node=node_name,
                    shape=value_dims(vi) if vi is not None else None,
                    params=params if j == 0 else 0,
                    dtype=_dtype(vi) if vi is not None else "unknown",
                    layout=layouts.get(out),
                    framework="/".join(paths[out]) if out in paths else None,
                )
            )
    return layers


def resolve_tensor(model: onnx.ModelProto, name: str, layers: list[Layer] | None = None) -> str:
    """The tensor a user means by `name`: a tensor name, a graph input, a node name (its first
    output), or a framework layer name the exporter kept in the node scopes (Keras' "conv2d_4",
    torch's "layer4": the layer's output, its last tensor in graph order). Raises
    LayerNotFoundError with close matches (framework layer names included) otherwise."""
    layers = layers if layers is not None else list_layers(model)
    tensors = {la.name for la in layers}
    if name in tensors:
        return name
    inputs = [v.name for v in model.graph.input]
    if name in inputs or name == "input":
        return name if name in inputs else inputs[0]
    for la in layers:
        if la.node == name:
            return la.name
    found = framework_output(layers, name, shape_only(model))
    if found is not None:
        return found
    raise LayerNotFoundError(name, layer_candidates(layers))


def layer_candidates(layers: list[Layer]) -> list[str]:
    """What a user may name: tensor names, node names and framework layer names (suggestions
    for LayerNotFoundError)."""
    frameworks: dict[str, None] = {}
    for la in layers:
        if la.framework:
            parts = la.framework.split("/")
            frameworks.update(dict.fromkeys([*parts, la.framework]))
    return [la.name for la in layers] + sorted({la.node for la in layers}) + list(frameworks)


# Ops whose output is never what a framework layer "outputs" (shape arithmetic inside a layer).
_SHAPE_OPS = {"Shape", "Size", "ConstantOfShape", "Range", "NonZero"}


def framework_output(layers: list[Layer], name: str, exclude: Collection[str] = ()) -> str | None:
    """The output tensor of framework layer `name` (a path component such as "conv2d_4", or a
    path such as "layer4/layer4.1/conv2"): the last tensor in graph order of the nodes in that
    scope, leaving out shape arithmetic (Shape ops, non-float tensors, `exclude`). None when no
    layer has that name."""
    want = [p for p in name.strip("/").split("/") if p]
    if not want:
        return None
    hit: Layer | None = None
    for la in layers:
        if not la.framework or la.op in _SHAPE_OPS or la.name in exclude:
            continue
        if la.dtype != "unknown" and not la.dtype.startswith("float"):
            continue
        path = la.framework.split("/")
        k = len(want)
        if any(path[i : i + k] == want for i in range(len(path) - k + 1)):
            hit = la
    return hit.name if hit is not None else None


def subgraph_inputs(node: onnx.NodeProto) -> list[str]:
    """Outer-scope names a control-flow node's subgraphs read (implicit inputs)."""
    names: list[str] = []
    for a in node.attribute:
        graphs = [a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)
        for g in graphs:
            inner = (
                {o for n in g.node for o in n.output}
                | {i.name for i in g.input}
                | {t.name for t in g.initializer}
            )
            for n in g.node:
                # A nested body may read this body's own tensors: those are not outer names.
                names += [i for i in (*n.input, *subgraph_inputs(n)) if i and i not in inner]
    return names


def opset_version(model: onnx.ModelProto) -> int:
    """The model's default-domain (ai.onnx) opset version; 0 when it imports none."""
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
