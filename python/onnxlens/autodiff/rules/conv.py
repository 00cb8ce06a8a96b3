"""Conv and ConvTranspose data gradients (groups, dilations, strides, pads, auto_pad).

Conv with stride 1 and constant weights differentiates into another Conv with the weights
transposed per group and flipped (computed once in numpy): ORT's Conv kernels are much faster than
its ConvTranspose. Strided convs use ConvTranspose with pads/output_padding computed from the
static spatial sizes so odd sizes and strides land exactly on the input size.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...graph.shapes import same_pads, split_pad
from ..registry import InputGrads, RuleContext, register


def resolve_pads(
    ctx: RuleContext, in_sp: list[int], kernel: list[int], strides: list[int], dil: list[int]
) -> list[int]:
    """Explicit (begin..., end...) pads of a Conv or pool, auto_pad resolved (`same_pads`;
    VALID pads nothing)."""
    nd = len(in_sp)
    auto = ctx.attr("auto_pad", "NOTSET")
    if auto == "VALID":
        return [0] * (2 * nd)
    if auto not in ("SAME_UPPER", "SAME_LOWER"):
        return list(ctx.attr("pads") or [0] * (2 * nd))
    begins, ends = same_pads(in_sp, kernel, strides, dil, auto)
    return begins + ends


def window_geometry(ctx: RuleContext, kernel: list[int], transposed: bool = False) -> dict:
    """Sliding-window sizes of a Conv, ConvTranspose or pool over input 0: kernel, strides,
    dilations, effective extents, static input spatial sizes and pads (auto_pad resolved, except
    for ConvTranspose, whose pads mean something else)."""
    nd = len(kernel)
    strides = list(ctx.attr("strides") or [1] * nd)
    dil = list(ctx.attr("dilations") or [1] * nd)
    eff = [(k - 1) * d + 1 for k, d in zip(kernel, dil, strict=True)]
    in_sp = ctx.static_dims(ctx.x(), list(range(2, 2 + nd)))
    if transposed:
        pads = list(ctx.attr("pads") or [0] * (2 * nd))
    else:
        pads = resolve_pads(ctx, in_sp, kernel, strides, dil)
    return {
        "nd": nd,
        "kernel": kernel,
        "strides": strides,
        "dil": dil,
        "eff": eff,
        "in": in_sp,
        "pads": pads,
    }


def transpose_pads(geo: dict, out_sp: list[int]) -> tuple[list[int], list[int] | None]:
    """(pads, output_padding) of the ConvTranspose that spreads an (out_sp) map back over the
    window's input: begin pads as the forward's, the end trimmed or padded so odd sizes and
    strides land exactly on the input size."""
    nd = geo["nd"]
    pb = list(geo["pads"][:nd])
    pads_end, out_pad = [], []
    for i in range(nd):
        r = (out_sp[i] - 1) * geo["strides"][i] + geo["eff"][i] - pb[i] - geo["in"][i]
        pads_end.append(max(r, 0))
        out_pad.append(max(-r, 0))
    return pb + pads_end, (out_pad if any(out_pad) else None)


def _geometry(ctx: RuleContext, w: str, transposed: bool = False) -> dict:
    wshape = ctx.b.static_shape(w)
    if wshape is None:
        ctx.fail(f"the weight shape of {w!r} is unknown")
    kernel = list(ctx.attr("kernel_shape") or wshape[2:])
    if not all(isinstance(k, int) for k in kernel):
        ctx.fail("the kernel shape is unknown")
    return {**window_geometry(ctx, kernel, transposed), "group": int(ctx.attr("group", 1))}


def _flipped_weight(w: np.ndarray, group: int) -> np.ndarray:
    """Conv weight (M, C/g, k...) -> the weight of the stride-1 data-gradient Conv (C, M/g, k...)."""
    m = w.shape[0]
    mg = m // group
    parts = [np.swapaxes(w[j * mg : (j + 1) * mg], 0, 1) for j in range(group)]
    wt = np.concatenate(parts, axis=0)
    return np.ascontiguousarray(np.flip(wt, axis=tuple(range(2, w.ndim))))


def _window_op(
    ctx: RuleContext, op_type: str, g: str, w: str, geo: dict, hint: str, **attrs: Any
) -> str:
    """A Conv or ConvTranspose of `g` with weight `w` over the forward window's kernel,
    dilations and groups (strides and pads as given)."""
    return ctx.b.op(
        op_type,
        [g, w],
        hint=hint,
        dilations=geo["dil"],
        group=geo["group"],
        kernel_shape=geo["kernel"],
        **attrs,
    )


def conv_data_grad(ctx: RuleContext, g: str, x: str, w: str, geo: dict) -> str:
    b, nd = ctx.b, geo["nd"]
    pb, pe = geo["pads"][:nd], geo["pads"][nd:]
    wv = b.constant_value(w)
    if wv is not None and all(s == 1 for s in geo["strides"]):
        new_pads = [e - 1 - p for e, p in zip(geo["eff"], pb, strict=True)] + [
            e - 1 - p for e, p in zip(geo["eff"], pe, strict=True)
        ]
        if min(new_pads) >= 0:
            wflip = b.const(_flipped_weight(wv, geo["group"]), hint="wflip")
            return _window_op(ctx, "Conv", g, wflip, geo, "dconv", pads=new_pads)
    out_sp = [
        (i + p0 + p1 - e) // s + 1
        for i, p0, p1, e, s in zip(geo["in"], pb, pe, geo["eff"], geo["strides"], strict=True)
    ]
    if wv is not None:
        gx = _depthwise_zero_insert_grad(ctx, g, wv, geo, out_sp)
        if gx is not None:
            return gx
    pads, out_pad = transpose_pads(geo, out_sp)
    return _window_op(
        ctx,
        "ConvTranspose",
        g,
        w,
        geo,
        "dconvT",
        strides=geo["strides"],
        pads=pads,
        output_padding=out_pad,
    )


# `benchmarks/bench_depthwise_grad.py` (2-vCPU AVX-512 machine, batch 8, stride 2, 32-576
# channels): zero insertion beats ORT's ConvTranspose 2-3.5x for 5x5 kernels at every size and
# 1.1-2x for 3x3 kernels on gradients up to 28x28; for 3x3 at 56x56 the two trade places
# (0.90x-1.12x), so ConvTranspose is kept there.
_ZI_MIN_KERNEL_AREA = 16
_ZI_MAX_GRAD_AREA = 1024


def _depthwise_zero_insert_grad(
    ctx: RuleContext, g: str, wv: np.ndarray, geo: dict, out_sp: list[int]
) -> str | None:
    """Data gradient of a strided depthwise 2-D conv (multiplier 1, dilation 1) as zero insertion
    plus a stride-1 depthwise Conv with the flipped kernel, or None to use ConvTranspose.

    ORT's ConvTranspose loops over groups with a GEMM and a single-threaded col2im each, which
    for a depthwise conv is one group per channel. Here the zeros are inserted by a ConvTranspose
    with one 1x1 channel over the (N*C, 1, H, W) view of the gradient (a single group, cheap), and
    the rest is ORT's fast depthwise Conv (blocked NCHWc when C allows): gx[p] = sum_k w[k]
    z[p + pb - k] is a correlation of the zero-inserted z with the flipped kernel, begin pads
    k - 1 - pb, end pads whatever makes the output the input's size."""
    b, nd = ctx.b, geo["nd"]
    c = wv.shape[0]
    if (
        nd != 2
        or geo["group"] != c
        or wv.shape[1] != 1
        or any(d != 1 for d in geo["dil"])
        or all(s == 1 for s in geo["strides"])
    ):
        return None
    kernel, strides, pb = geo["kernel"], geo["strides"], geo["pads"][:nd]
    if kernel[0] * kernel[1] < _ZI_MIN_KERNEL_AREA and out_sp[0] * out_sp[1] > _ZI_MAX_GRAD_AREA:
        return None
    z_len = [(o - 1) * s + 1 for o, s in zip(out_sp, strides, strict=True)]
    begin = [k - 1 - p for k, p in zip(kernel, pb, strict=True)]
    end = [
        geo["in"][i] - 1 + kernel[i] - begin[i] - z_len[i] for i in range(nd)
    ]  # output length = input length
    if min(begin) < 0 or min(end) < 0:
        return None
    flat = b.op("Reshape", [g, b.ints([-1, 1, *out_sp])], hint="dw_flat")
    one = b.const(np.ones((1, 1, 1, 1), dtype=wv.dtype), hint="one")
    z = b.op("ConvTranspose", [flat, one], hint="zero_insert", strides=strides, kernel_shape=[1, 1])
    z = b.op("Reshape", [z, b.ints([-1, c, *z_len])], hint="dw_z")
    return b.op(
        "Conv",
        [z, b.const(_flipped_weight(wv, c), hint="wflip")],
        hint="dconv_zi",
        pads=begin + end,
        group=c,
        kernel_shape=kernel,
    )


def _bias_grad(ctx: RuleContext, g: str) -> str:
    r = ctx.rank(ctx.y())
    return ctx.b.reduce_sum(g, [0, *range(2, r)], keepdims=False)


@register("Conv")
def conv(ctx: RuleContext, grads: list[str]) -> InputGrads:
    g, x, w = grads[0], ctx.x(0), ctx.x(1)
    if ctx.wants(1):
        ctx.fail(
            "gradients w.r.t. Conv weights are not implemented (the weight is computed from the input)"
        )
    gx = conv_data_grad(ctx, g, x, w, _geometry(ctx, w)) if ctx.wants(0) else None
    gb = _bias_grad(ctx, g) if ctx.wants(2) else None
    return [gx, None, gb][: len(ctx.inputs)]


@register("ConvTranspose")
def conv_transpose(ctx: RuleContext, grads: list[str]) -> InputGrads:
    g, w = grads[0], ctx.x(1)
    if ctx.wants(1):
        ctx.fail("gradients w.r.t. ConvTranspose weights are not implemented")
    gx = None
    if ctx.wants(0):
        geo = _geometry(ctx, w, transposed=True)
        nd = geo["nd"]
        op = list(ctx.attr("output_padding") or [0] * nd)
        pads = geo["pads"]
        auto = ctx.attr("auto_pad", "NOTSET")
        if ctx.has_attr("output_shape") or auto in ("SAME_UPPER", "SAME_LOWER", "VALID"):
            out = ctx.static_dims(ctx.y(), list(range(2, 2 + nd)))
            pads = [0] * (2 * nd)
            for i in range(nd):
                total = geo["strides"][i] * (geo["in"][i] - 1) + op[i] + geo["eff"][i] - out[i]
                pads[i], pads[i + nd] = split_pad(total, auto)
        pb, pe = pads[:nd], pads[nd:]
        pads = list(pb) + [max(0, p - o) for p, o in zip(pe, op, strict=True)]
        gx = _window_op(ctx, "Conv", g, w, geo, "dconvT", strides=geo["strides"], pads=pads)
    gb = _bias_grad(ctx, g) if ctx.wants(2) else None
    return [gx, None, gb][: len(ctx.inputs)]
