"""Per-channel spatial reductions appended inside the graph, so only (N, C) values leave the runtime.

Mining the top images of every channel of a (N, C, H, W) layer needs, per image and channel, one
score (the spatial max or mean) and where the max is. Fetching the whole feature map would move
N*C*H*W floats out of ONNX Runtime per layer; reducing inside the graph moves N*C floats and N*C
int64 positions, which is what makes mining cost about the same as the bare forward pass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper

from ..errors import ConfigurationError, ShapeError
from .layers import opset_version, tensor_shape, value_infos
from .naming import NameGenerator
from .walk import prune as prune_graph

SCORES = ("max", "mean")


@dataclass(frozen=True)
class Reduction:
    """Output names added for one tapped tensor.

    `score`: float32 (N, C), the spatial max or mean per channel. `argmax`: int64 (N, C), the index
    of the spatial max in the flattened H*W grid (first one on ties, like numpy). `shape`: int64
    (rank,), the runtime shape of the tensor, so a dynamic H, W is known for row = argmax // W.
    """

    tensor: str
    score: str
    argmax: str
    shape: str


def add_channel_reductions(
    model: onnx.ModelProto,
    tensors: Sequence[str],
    score: str = "max",
    keep_outputs: Sequence[str] = (),
    prune: bool = True,
    perms: Mapping[str, Sequence[int]] | None = None,
) -> tuple[onnx.ModelProto, dict[str, Reduction]]:
    """A copy of `model` whose outputs are, for each tensor in `tensors`, its per-channel spatial
    `score` ("max" or "mean"), the flattened argmax of the spatial max, and its runtime shape.

    Tensors are (N, C, H, W) or (N, C) (then H = W = 1 and argmax is 0). The batch stays dynamic:
    the reshape to (N, C, H*W) copies N and C from the input (Reshape's 0) and infers H*W (-1).
    `keep_outputs` are original outputs kept after the new ones (e.g. logits for labels). With
    `prune`, nodes no output depends on are dropped, so layers past the deepest tap cost nothing.
    `perms` maps tensors that are not (N, C, H, W), e.g. NHWC feature maps, to the Transpose perm
    that makes them so; their scores, argmax and shape are then those of the transposed tensor.
    """
    if score not in SCORES:
        raise ConfigurationError(f"score must be one of {', '.join(SCORES)}; got {score!r}.")
    if not tensors:
        raise ConfigurationError("no tensors to reduce; pass layer names (see `onnxlens inspect`).")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    new = NameGenerator(out, prefix="onnxlens/reduce")
    opset = opset_version(out)
    infos = value_infos(model)
    known = set(infos) | {t.name for t in g.initializer} | {o for n in g.node for o in n.output}
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    outputs: list[onnx.ValueInfoProto] = []
    result: dict[str, Reduction] = {}

    def const(hint: str, values: list[int]) -> str:
        name = new(hint)
        inits.append(helper.make_tensor(name, TensorProto.INT64, [len(values)], values))
        return name

    flat_shape = const("flat_shape", [0, 0, -1])
    axes2 = const("axes", [2]) if opset >= 18 else ""
    for tensor in dict.fromkeys(tensors):
        if tensor not in known:
            raise ConfigurationError(
                f"tensor {tensor!r} is not in the model; resolve layer names first."
            )
        shape = tensor_shape(model, tensor)
        if shape is not None and len(shape) not in (2, 4):
            raise ShapeError(
                f"layer {tensor!r} has shape {tuple(shape)}; mining needs (N, C, H, W) feature maps or "
                "(N, C) vectors. Pick a Conv/pooling/activation output (see `onnxlens inspect`)."
            )
        hint = tensor.rsplit("/", 1)[-1]
        x = tensor
        perm = (perms or {}).get(tensor)
        if perm is not None:
            x = new(hint + "_nchw")
            nodes.append(
                helper.make_node("Transpose", [tensor], [x], name=new("transpose"), perm=list(perm))
            )
        vi = infos.get(tensor)
        elem = vi.type.tensor_type.elem_type if vi is not None else TensorProto.FLOAT
        if elem not in (TensorProto.FLOAT, 0):
            cast = new(hint + "_f32")
            nodes.append(
                helper.make_node("Cast", [x], [cast], name=new("cast"), to=TensorProto.FLOAT)
            )
            x = cast
        flat = new(hint + "_flat")
        nodes.append(helper.make_node("Reshape", [x, flat_shape], [flat], name=new("reshape")))
        red = new(hint + "_" + score)
        argmax = new(hint + "_argmax")
        shp = new(hint + "_shape")
        op = "ReduceMax" if score == "max" else "ReduceMean"
        if opset >= 18:
            nodes.append(helper.make_node(op, [flat, axes2], [red], name=new(op), keepdims=0))
        else:
            nodes.append(helper.make_node(op, [flat], [red], name=new(op), axes=[2], keepdims=0))
        nodes.append(
            helper.make_node("ArgMax", [flat], [argmax], name=new("argmax"), axis=2, keepdims=0)
        )
        nodes.append(helper.make_node("Shape", [x], [shp], name=new("shape")))
        outputs += [
            helper.make_tensor_value_info(red, TensorProto.FLOAT, [None, None]),
            helper.make_tensor_value_info(argmax, TensorProto.INT64, [None, None]),
            helper.make_tensor_value_info(shp, TensorProto.INT64, [None]),
        ]
        result[tensor] = Reduction(tensor, red, argmax, shp)
    kept = [o for o in model.graph.output if o.name in set(keep_outputs)]
    missing = set(keep_outputs) - {o.name for o in kept}
    if missing:
        raise ConfigurationError(f"outputs {sorted(missing)} are not outputs of the model.")
    g.node.extend(nodes)
    g.initializer.extend(inits)
    del g.output[:]
    g.output.extend(outputs)
    for o in kept:
        # Element type only: shape inference may have pinned a batch size a dynamic run lacks.
        rank = len(o.type.tensor_type.shape.dim) if o.type.tensor_type.HasField("shape") else None
        dims = [None] * rank if rank is not None else None
        g.output.append(helper.make_tensor_value_info(o.name, o.type.tensor_type.elem_type, dims))
    if prune:
        prune_graph(g)
    onnx.checker.check_model(out)
    return out, result


def split_argmax(argmax: np.ndarray, shape: np.ndarray) -> np.ndarray:
    """(N, C) flat argmax and the runtime tensor shape -> int32 (N, C, 2) (row, col) in the grid."""
    w = int(shape[3]) if len(shape) == 4 else 1
    rows, cols = np.divmod(argmax.astype(np.int64), w)
    return np.ascontiguousarray(np.stack([rows, cols], axis=-1).astype(np.int32))
