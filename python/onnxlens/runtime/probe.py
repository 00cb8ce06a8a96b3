"""Shapes static inference cannot find, read off ONNX Runtime runs of the model itself."""

from __future__ import annotations

import logging

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper

from ..graph.taps import add_outputs

log = logging.getLogger("onnxlens")


def probe_dims(model: onnx.ModelProto, names: list[str]) -> dict[str, tuple[int | str, ...]]:
    """The dims of tensors `names` read off two ONNX Runtime runs of `model` on zeros, at batch 1
    and 2 (once at a static batch). A dim equal in both runs is that int; one that follows the
    batch linearly is "batch" (k = 1) or "batch*k", anything else "dyn:a:b": equal labels mean
    equal sizes at every batch. Empty when the probe cannot run (a non-batch input dim is
    dynamic, or ORT refuses the model)."""
    # Shape(t) for each tensor: the runs return a few int64 each, so the probe needs the memory
    # of one inference, not of every probed tensor at once.
    m = onnx.ModelProto()
    m.CopyFrom(model)
    outs = [f"onnxlens_probe_shape/{i}" for i in range(len(names))]
    m.graph.node.extend(
        helper.make_node("Shape", [n], [o], name=o) for n, o in zip(names, outs, strict=True)
    )
    del m.graph.output[:]
    m.graph.output.extend(
        helper.make_tensor_value_info(o, onnx.TensorProto.INT64, [None]) for o in outs
    )
    runs = _probe_runs(m, outs) if outs else None
    if runs is None:
        return {}
    out: dict[str, tuple[int | str, ...]] = {}
    for name, a, b in zip(names, runs[0], runs[-1], strict=True):
        a, b = np.asarray(a).reshape(-1), np.asarray(b).reshape(-1)
        if a.size != b.size:
            continue
        dims: list[int | str] = []
        for da, db in zip(a.tolist(), b.tolist(), strict=True):
            if da == db:
                dims.append(int(da))
            elif db == 2 * da:
                dims.append("batch" if da == 1 else f"batch*{da}")
            else:
                dims.append(f"dyn:{da}:{db}")
        out[name] = tuple(dims)
    return out


def _probe_runs(model: onnx.ModelProto, names: list[str]) -> list[list[np.ndarray]] | None:
    """`names` fetched from runs on zeros at batch 1 and 2 (a static batch is fed as it is: ORT
    refuses any other); None when a non-batch input dim is dynamic or ORT cannot run it."""
    inits = {t.name for t in model.graph.initializer}
    runtime = [v for v in model.graph.input if v.name not in inits]
    dim0 = runtime[0].type.tensor_type.shape.dim[:1] if runtime else []
    static = (
        dim0[0].dim_value if dim0 and dim0[0].HasField("dim_value") and dim0[0].dim_value > 0 else 0
    )
    batches = (static,) if static else (1, 2)
    feeds_shapes: list[tuple[str, int, list[int]]] = []
    for v in runtime:
        rest = [
            d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
            for d in list(v.type.tensor_type.shape.dim)[1:]
        ]
        if any(d is None for d in rest):
            return None
        feeds_shapes.append((v.name, v.type.tensor_type.elem_type, [int(d) for d in rest if d]))
    outputs = {o.name for o in model.graph.output}
    probe = add_outputs(model, [n for n in names if n not in outputs])
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        sess = ort.InferenceSession(
            probe.SerializeToString(), opts, providers=["CPUExecutionProvider"]
        )
        runs = []
        for batch in batches:
            feeds = {
                name: np.zeros([batch, *rest], dtype=helper.tensor_dtype_to_np_dtype(et))
                for name, et, rest in feeds_shapes
            }
            runs.append(sess.run(names, feeds))
    except Exception as exc:
        log.debug("onnxlens: shape probe failed: %s", exc)
        return None
    return runs


def probe_missing_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Fill in shapes that static inference could not (Paddle exports compute Reshape targets
    from Shape/Slice/Cast/Concat at run time) by running the model once at batch 1 and once at
    batch 2 on zeros: dims that follow the batch become symbolic. Needs static non-batch input dims
    (pass input_shape=); otherwise the rules that need sizes say what is missing."""
    infos = {v.name for v in model.graph.value_info if v.type.tensor_type.HasField("shape")}
    infos |= {v.name for v in model.graph.input} | {v.name for v in model.graph.output}
    inits = {t.name for t in model.graph.initializer}
    missing = [
        o
        for n in model.graph.node
        for o in n.output
        if o and o not in infos and o not in inits and n.op_type != "Constant"
    ]
    if not missing:
        return model
    runs = _probe_runs(model, missing)  # None: a dynamic non-batch dim, or ORT refused
    if runs is None:
        return model
    for name, a, b in zip(missing, runs[0], runs[-1], strict=True):
        a, b = np.asarray(a), np.asarray(b)
        if a.ndim != b.ndim:
            continue
        dims: list[int | str] = [
            da if da == db else "batch" for da, db in zip(a.shape, b.shape, strict=True)
        ]
        et = helper.np_dtype_to_tensor_dtype(a.dtype)
        model.graph.value_info.append(helper.make_tensor_value_info(name, et, dims))
    return model
