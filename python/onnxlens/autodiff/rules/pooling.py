"""MaxPool, AveragePool, GlobalAveragePool, GlobalMaxPool.

MaxPool routes the gradient with the pool's own Indices output (added to the primal node), so
each window has exactly one winner, as in PyTorch. Non-overlapping windows scatter without
reduction (each input element belongs to at most one window); overlapping windows need
ScatterElements(reduction="add"), available from opset 16.

AveragePool's backward is a ConvTranspose of the gradient divided by each window's divisor with a
ones kernel, on (N*C, 1, H, W) so the channel count need not be static. Divisors (border
windows with or without pads, ceil_mode) are computed in numpy from the static sizes.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto

from ..registry import InputGrads, RuleContext, deflinear, register
from .conv import transpose_pads, window_geometry


def _pool_geometry(ctx: RuleContext) -> dict:
    kernel = list(ctx.attr("kernel_shape"))
    out_sp = ctx.static_dims(ctx.y(), list(range(2, 2 + len(kernel))))
    return {**window_geometry(ctx, kernel), "out": out_sp}


@register("MaxPool")
def max_pool(ctx: RuleContext, grads: list[str]) -> InputGrads:
    b, x, g = ctx.b, ctx.x(), grads[0]
    if int(ctx.attr("storage_order", 0)) != 0:
        ctx.fail("storage_order=1 (column-major indices) is not supported")
    geo = _pool_geometry(ctx)
    overlapping = any(s < e for s, e in zip(geo["strides"], geo["eff"], strict=True))
    if overlapping and ctx.opset < 16:
        ctx.fail(
            f"overlapping windows need ScatterElements(reduction='add') from opset 16, the model has opset {ctx.opset}; "
            "convert it with onnx.version_converter.convert_version(model, 16)"
        )
    node = ctx.node
    if len(node.output) < 2 or not node.output[1]:
        idx = b.names("maxpool_indices")
        if len(node.output) < 2:
            node.output.append(idx)
        else:
            node.output[1] = idx
        b.elem_types[idx] = TensorProto.INT64
    indices = node.output[1]
    # Indices address the whole input tensor (batch and channel offsets included).
    flat_idx = b.op("Reshape", [indices, b.ints([-1])])
    flat_g = b.op("Reshape", [g, b.ints([-1])])
    zeros = b.op("Reshape", [b.zeros_like(x), b.ints([-1])])
    scattered = b.op(
        "ScatterElements",
        [zeros, flat_idx, flat_g],
        axis=0,
        reduction="add" if overlapping else None,
    )
    return [b.reshape_like(scattered, x)]


def _divisors(geo: dict, count_include_pad: bool) -> np.ndarray:
    """Per output position, the divisor ORT's AveragePool used (separable per spatial axis)."""
    per_axis = []
    nd = geo["nd"]
    for i in range(nd):
        size, s, k, d = geo["in"][i], geo["strides"][i], geo["kernel"][i], geo["dil"][i]
        pb, pe = geo["pads"][i], geo["pads"][i + nd]
        cnt = []
        for o in range(geo["out"][i]):
            start = o * s - pb
            taps = [start + j * d for j in range(k)]
            if count_include_pad:
                cnt.append(sum(1 for t in taps if -pb <= t < size + pe))
            else:
                cnt.append(sum(1 for t in taps if 0 <= t < size))
        per_axis.append(np.asarray(cnt, dtype=np.float64))
    div = per_axis[0]
    for a in per_axis[1:]:
        div = np.multiply.outer(div, a)
    return div


@deflinear("AveragePool")
def average_pool(ctx: RuleContext, g: str) -> str:
    b, x = ctx.b, ctx.x()
    geo = _pool_geometry(ctx)
    div = _divisors(geo, bool(ctx.attr("count_include_pad", 0)))
    dt = b.np_dtype(x)
    scaled = b.mul(
        g, b.const(np.where(div > 0, 1.0 / np.maximum(div, 1), 0.0).astype(dt), hint="inv_div")
    )
    # (N, C, *out) -> (N*C, 1, *out): a ones kernel with one channel, independent of C.
    flat = b.op("Reshape", [scaled, b.ints([-1, 1, *geo["out"]])])
    pads, out_pad = transpose_pads(geo, geo["out"])
    kernel = b.const(np.ones([1, 1, *geo["kernel"]], dtype=dt), hint="ones_kernel")
    up = b.op(
        "ConvTranspose",
        [flat, kernel],
        strides=geo["strides"],
        dilations=geo["dil"],
        kernel_shape=geo["kernel"],
        pads=pads,
        output_padding=out_pad,
    )
    return b.reshape_like(up, x)


@deflinear("GlobalAveragePool")
def global_average_pool(ctx: RuleContext, g: str) -> str:
    b, x = ctx.b, ctx.x()
    s = b.static_shape(x)
    spatial = [d for d in (s or ())[2:] if isinstance(d, int) and d > 0]
    if s is not None and len(spatial) == len(s) - 2:
        scaled = b.mul(g, b.scalar(1.0 / float(np.prod(spatial)), x))
    else:
        n = b.op(
            "ReduceProd",
            [b.slice(b.shape(x), [2], [2**62], [0])],
            keepdims=0,
        )
        scaled = b.op("Div", [g, b.op("Cast", [n], to=b.elem_type(x))])
    return b.op("Expand", [scaled, b.shape(x)])


@register("GlobalMaxPool")
def global_max_pool(ctx: RuleContext, grads: list[str]) -> InputGrads:
    """One winner per channel (the first maximum, like torch's adaptive max pool)."""
    b, x, g = ctx.b, ctx.x(), grads[0]
    flat = b.op("Reshape", [x, b.ints([0, 0, -1])])
    arg = b.op("ArgMax", [flat], axis=2, keepdims=1)
    gflat = b.op("Reshape", [g, b.ints([0, 0, 1])])
    scattered = b.op("ScatterElements", [b.zeros_like(flat), arg, gflat], axis=2)
    return [b.reshape_like(scattered, x)]
