"""CPU tuning of a VJP graph for one session: a static batch and NCHWc entry points.

`build_vjp` emits a graph with a dynamic batch that runs on any execution provider. On the CPU,
ONNX Runtime runs convolutions in a blocked channel layout (NCHWc) and keeps an elementwise op
(a ReLU mask times its gradient, a residual sum) in that layout only when every input already is
in it and their shapes are provably equal. Two things defeat that in a VJP graph:

- the batch is symbolic and reaches a mask along two paths (the forward from the input, the
  backward from the cotangent seed), so ORT cannot prove the shapes equal: `specialise_batch`
  fixes the batch for one session;
- ops without an NCHWc kernel (the ConvTranspose of a strided conv, the Expand of a global
  pooling, the scatter of a MaxPool) hand the gradient over in plain NCHW, and every Mul and Add
  downstream then follows it out of the blocked layout until the next Conv:
  `add_nchwc_entries` puts an identity 1x1 depthwise Conv (exact: weights 1) behind them, which ORT
  turns into a reorder into NCHWc.

Measured on ResNet-50 (batch 8, 2 threads, interleaved runs): the reorders in and out of NCHWc
drop from 143 to 27 nodes and the VJP from 767 to 734 ms (best of 8; medians 801 vs 748).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..graph import weightless
from ..graph.builder import GRAD_PREFIX

# Ops whose gradient output is plain NCHW even when ORT runs the convolutions around them blocked.
_NCHW_PRODUCERS = {"ConvTranspose", "Expand", "Reshape", "ScatterElements"}
# The channel block of ORT's NCHWc kernels is 8 (AVX2) or 16 (AVX-512); a count that is not a
# multiple of the block keeps the tensor in NCHW, where the identity Conv would only cost a pass.
_BLOCK = 16


def specialise_batch(model: onnx.ModelProto, batch: int) -> onnx.ModelProto:
    """Copy of a VJP graph whose image input (the first graph input) and cotangent seeds get
    `batch` as their dim 0 when it is dynamic, as does every dim carrying one of their symbolic
    batch names. Other inputs (a model's extra inputs) are left alone."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    inits = {t.name for t in g.initializer}
    runtime = [vi for vi in g.input if vi.name not in inits]
    batched = {vi.name for vi in runtime[:1]} | {
        vi.name for vi in runtime if vi.name.startswith(GRAD_PREFIX + "/")
    }
    params: set[str] = set()
    for vi in g.input:
        dims = vi.type.tensor_type.shape.dim
        if vi.name not in batched or not dims or dims[0].HasField("dim_value"):
            continue
        if dims[0].dim_param:
            params.add(dims[0].dim_param)
        dims[0].Clear()
        dims[0].dim_value = batch
    for vi in list(g.value_info) + list(g.output):
        for d in vi.type.tensor_type.shape.dim:
            if d.dim_param and d.dim_param in params:
                d.Clear()
                d.dim_value = batch
    return out


def _static_4d_channels(model: onnx.ModelProto) -> dict[str, int]:
    """Channel count of every float32 4-D tensor with a static shape and spatial size > 1."""
    try:
        inferred = onnx.shape_inference.infer_shapes(weightless(model))
    except Exception:  # tuning is optional: without shapes there are no entry points
        return {}
    out = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output):
        t = vi.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
        if t.elem_type == TensorProto.FLOAT and len(dims) == 4 and None not in dims:
            if dims[2] * dims[3] > 1:  # type: ignore[operator]
                out[vi.name] = int(dims[1])  # type: ignore[arg-type]
    return out


def add_nchwc_entries(out: onnx.ModelProto) -> None:
    """Put, in place, an identity depthwise 1x1 Conv behind each backward ConvTranspose, Expand,
    Reshape or ScatterElements of a batch-specialised VJP graph whose 4-D float32 output has a
    channel count that is a multiple of 16 and is read by something other than a Conv."""
    channels = _static_4d_channels(out)
    nodes = list(out.graph.node)
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in nodes:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    taken = {o for n in nodes for o in n.output} | {t.name for t in out.graph.initializer}
    graph_outputs = {v.name for v in out.graph.output}
    weights: dict[int, str] = {}
    renamed: dict[str, str] = {}
    new_nodes: list[onnx.NodeProto] = []
    for n in nodes:
        node = onnx.NodeProto()
        node.CopyFrom(n)
        for k, i in enumerate(node.input):
            if i in renamed:
                node.input[k] = renamed[i]
        new_nodes.append(node)
        o = n.output[0] if n.output else ""
        c = channels.get(o)
        if (
            n.op_type not in _NCHW_PRODUCERS
            or not o.startswith(GRAD_PREFIX + "/")
            or c is None
            or c % _BLOCK
            or all(u.op_type == "Conv" for u in consumers.get(o, []))
            or o in graph_outputs
        ):
            continue
        if c not in weights:
            weights[c] = _fresh(taken, f"{GRAD_PREFIX}/nchwc_identity_{c}")
            out.graph.initializer.append(
                numpy_helper.from_array(np.ones((c, 1, 1, 1), np.float32), weights[c])
            )
        renamed[o] = _fresh(taken, f"{o}_nchwc")
        new_nodes.append(
            helper.make_node(
                "Conv",
                [o, weights[c]],
                [renamed[o]],
                name=_fresh(taken, f"{o}_nchwc_node"),
                group=c,
                kernel_shape=[1, 1],
            )
        )
    del out.graph.node[:]
    out.graph.node.extend(new_nodes)


def _fresh(taken: set[str], name: str) -> str:
    base, k = name, 0
    while name in taken:
        k += 1
        name = f"{base}_{k}"
    taken.add(name)
    return name


def tune_for_cpu(model: onnx.ModelProto, batch: int) -> onnx.ModelProto:
    """The VJP graph a CPU session should run at `batch` samples per call (one copy of the
    model: its weights are hundreds of MB for the larger networks)."""
    out = specialise_batch(model, batch)
    add_nchwc_entries(out)
    return out
