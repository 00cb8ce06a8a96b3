"""Shapes static inference cannot find, read off ONNX Runtime runs of the model itself."""

from __future__ import annotations

import logging

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper

from ..graph.taps import add_outputs

log = logging.getLogger("onnxlens")


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
    runtime = [v for v in model.graph.input if v.name not in inits]
    feeds_shapes: list[tuple[str, int, list[int]]] = []
    dim0 = runtime[0].type.tensor_type.shape.dim[:1] if runtime else []
    static = (
        dim0[0].dim_value if dim0 and dim0[0].HasField("dim_value") and dim0[0].dim_value > 0 else 0
    )
    # A static batch is fed as it is (ORT refuses any other), and every probed dim is then static.
    batches = (static,) if static else (1, 2)
    for v in runtime:
        rest = [
            d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
            for d in list(v.type.tensor_type.shape.dim)[1:]
        ]
        if any(d is None for d in rest):
            return model  # the probe needs every non-batch dim
        feeds_shapes.append((v.name, v.type.tensor_type.elem_type, [int(d) for d in rest if d]))
    probe = add_outputs(model, missing)
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
            runs.append(sess.run(missing, feeds))
    except Exception as exc:
        log.debug("onnxlens: shape probe failed: %s", exc)
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
