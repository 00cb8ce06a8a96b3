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
    if ctx.opset < 16 and (overlapping or ctx.opset < 11):
        return [_max_pool_taps(ctx, g, geo)]
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


def _max_pool_taps(ctx: RuleContext, g: str, geo: dict) -> str:
    """MaxPool's backward without ScatterElements (before opset 16 it cannot add, before 11 it
    does not exist): every window tap as a channel, the first tap equal to the window's max gets
    the gradient, and a ConvTranspose with one-hot kernels sums the taps back onto the input
    (overlapping windows add up there).

    On the (N*C, 1, *spatial) view, a Conv with K = prod(kernel) one-hot kernels lays the K taps
    of each window side by side (exact: one product by 1, the rest by 0); taps that fall in the
    padding (or past the end with ceil_mode) are masked by a constant. A tap wins when it is not
    below the max (comparisons every opset has) and no earlier tap won: the earlier winners are
    counted by a 1x1 Conv with a strictly triangular 0/1 kernel, which is exact for small counts.
    Ties go to the first tap in window order, as PyTorch and ORT's Indices output do."""
    b, x, y = ctx.b, ctx.x(), ctx.y()
    nd, kernel, strides, dil = geo["nd"], geo["kernel"], geo["strides"], geo["dil"]
    in_sp, out_sp, pads = geo["in"], geo["out"], geo["pads"]
    k = int(np.prod(kernel))
    dt = b.np_dtype(x)
    onehot = np.eye(k, dtype=dt).reshape([k, 1, *kernel])
    # Conv pads: the pool's begin pads; end pads so the Conv's output is the pool's (ceil_mode).
    ends = [
        max(0, (o - 1) * s + e - i - p)
        for o, s, e, i, p in zip(out_sp, strides, geo["eff"], in_sp, pads[:nd], strict=True)
    ]
    # valid[t, *out]: tap t of window `out` lies inside the input.
    offsets = np.stack(np.unravel_index(np.arange(k), kernel), axis=0)  # (nd, K)
    valid = np.ones([k, *out_sp], dtype=bool)
    for a in range(nd):
        pos = (
            np.arange(out_sp[a])[None, :] * strides[a] - pads[a] + offsets[a][:, None] * dil[a]
        )  # (K, out_a)
        ok = (pos >= 0) & (pos < in_sp[a])
        valid &= ok.reshape([k] + [out_sp[a] if j == a else 1 for j in range(nd)])
    w1 = b.const(onehot, hint="taps_kernel")
    xf = b.op("Reshape", [x, b.ints([-1, 1, *in_sp])], hint="taps_x")
    taps = b.op(
        "Conv",
        [xf, w1],
        hint="taps",
        kernel_shape=kernel,
        strides=strides,
        dilations=dil,
        pads=list(pads[:nd]) + ends,
    )
    yf = b.op("Reshape", [y, b.ints([-1, 1, *out_sp])], hint="taps_y")
    hit = b.op("Cast", [b.op("Not", [b.op("Less", [taps, yf])])], to=b.elem_type(x))
    if not valid.all():
        hit = b.mul(hit, b.const(valid[None].astype(dt), hint="taps_valid"))
    # before[t] = number of winning taps before t; the first winner has none.
    tri = np.tril(np.ones((k, k), dtype=dt), -1).reshape([k, k] + [1] * nd)
    before = b.op(
        "Conv", [hit, b.const(tri, hint="taps_tri")], hint="taps_before", kernel_shape=[1] * nd
    )
    first = b.mul(
        hit, b.op("Cast", [b.op("Less", [before, b.scalar(0.5, before)])], to=b.elem_type(x))
    )
    gk = b.mul(first, b.op("Reshape", [g, b.ints([-1, 1, *out_sp])], hint="taps_g"))
    tpads, out_pad = transpose_pads(geo, out_sp)
    gx = b.op(
        "ConvTranspose",
        [gk, w1],
        hint="taps_back",
        kernel_shape=kernel,
        strides=strides,
        dilations=dil,
        pads=tpads,
        output_padding=out_pad,
    )
    return b.reshape_like(gx, x)


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
    return b.expand_like(scaled, x)


@register("GlobalMaxPool")
def global_max_pool(ctx: RuleContext, grads: list[str]) -> InputGrads:
    """One winner per channel (the first maximum, like torch's adaptive max pool)."""
    b, x, g = ctx.b, ctx.x(), grads[0]
    if ctx.opset < 11:
        ctx.fail(
            f"its backward needs ScatterElements (opset 11), the model has opset {ctx.opset}; "
            "convert it with onnx.version_converter.convert_version(model, 11)"
        )
    flat = b.op("Reshape", [x, b.ints([0, 0, -1])])
    arg = b.op("ArgMax", [flat], axis=2, keepdims=1)
    gflat = b.op("Reshape", [g, b.ints([0, 0, 1])])
    scattered = b.op("ScatterElements", [b.zeros_like(flat), arg, gflat], axis=2)
    return [b.reshape_like(scattered, x)]
