"""Static shapes of a graph: pinning an input's dims and best-effort shape inference.

Both return new ModelProtos (or fill a copy's value_info); the probe that fills what static
inference cannot runs ONNX Runtime and so lives in `runtime.probe`.
"""

from __future__ import annotations

from collections.abc import Sequence

import onnx

from ..errors import ShapeError
from .load import weightless


def pin_input_shape(model: onnx.ModelProto, input_shape: Sequence[int | None]) -> onnx.ModelProto:
    """Copy of `model` whose first runtime input has static dims (dim 0 stays as it is)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    inits = {t.name for t in out.graph.initializer}
    vi = next(v for v in out.graph.input if v.name not in inits)
    dims = vi.type.tensor_type.shape.dim
    if len(dims) != len(input_shape):
        raise ShapeError(
            f"input_shape {tuple(input_shape)} has rank {len(input_shape)}, but input {vi.name!r} has rank {len(dims)}."
        )
    for axis, (d, want) in enumerate(zip(dims, input_shape, strict=True)):
        if axis == 0 or want is None:
            continue
        d.Clear()
        d.dim_value = int(want)
    del out.graph.value_info[:]
    for o in out.graph.output:  # stale symbolic dims would shadow what inference now knows
        for d in o.type.tensor_type.shape.dim:
            if not d.HasField("dim_value"):
                d.Clear()
    return out


def infer_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Shape inference run on the weightless view (fast for big models), results copied back."""
    try:
        light = onnx.shape_inference.infer_shapes(
            weightless(model), check_type=False, strict_mode=False, data_prop=True
        )
    except Exception:  # best effort: rules that need sizes say so
        return model
    del model.graph.value_info[:]
    model.graph.value_info.extend(light.graph.value_info)
    for o, lo in zip(model.graph.output, light.graph.output, strict=True):
        o.CopyFrom(lo)
    return model
