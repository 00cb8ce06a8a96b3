"""Static shapes of a graph: pinning an input's dims, best-effort shape inference, and the
padding `auto_pad` stands for.

The first two return new ModelProtos (or fill a copy's value_info); the probe that fills what
static inference cannot runs ONNX Runtime and so lives in `runtime.probe`.
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


def split_pad(total: int, mode: str) -> tuple[int, int]:
    """(begin, end) halves of `total` padding along one axis, as the ONNX spec splits it: the odd
    pixel at the end for SAME_UPPER, at the beginning for anything else (SAME_LOWER, and
    ConvTranspose's pads derived from output_shape)."""
    small, big = total // 2, total - total // 2
    return (small, big) if mode == "SAME_UPPER" else (big, small)


def same_pads(
    in_sizes: Sequence[int],
    kernel: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
    mode: str,
) -> tuple[list[int], list[int]]:
    """(begins, ends) that auto_pad SAME_UPPER / SAME_LOWER (`mode`) stand for on a Conv or pool
    with static input spatial sizes `in_sizes`: the output is ceil(in / stride) per axis.

    A window shorter than the stride can need less than no padding; the spec's formula then asks
    for a negative total, which gives the same output size as none, so it is clamped at 0
    (explicit pads must be >= 0)."""
    begins: list[int] = []
    ends: list[int] = []
    for size, k, s, d in zip(in_sizes, kernel, strides, dilations, strict=True):
        out = -(-size // s)
        total = max(0, (out - 1) * s + (k - 1) * d + 1 - size)
        begin, end = split_pad(total, mode)
        begins.append(begin)
        ends.append(end)
    return begins, ends
