"""Gemm (transA/transB, alpha/beta) and MatMul (batched, broadcast, 1-D operands)."""

from __future__ import annotations

from typing import Any

from ..registry import InputGrads, RuleContext, defbilinear, register


def _gemm(ctx: RuleContext, a: str, bm: str, **attrs: Any) -> str:
    """A two-operand Gemm; before opset 11 C is required, so a zero scalar is passed with
    beta = 0 (unidirectionally broadcast to the product's shape)."""
    b = ctx.b
    if ctx.opset >= 11:
        return b.op("Gemm", [a, bm], **attrs)
    return b.op("Gemm", [a, bm, b.scalar(0.0, a)], beta=0.0, **attrs)


@register("Gemm")
def gemm(ctx: RuleContext, grads: list[str]) -> InputGrads:
    b, g = ctx.b, grads[0]
    a, bm = ctx.x(0), ctx.x(1)
    alpha, beta = float(ctx.attr("alpha", 1.0)), float(ctx.attr("beta", 1.0))
    ta, tb = int(ctx.attr("transA", 0)), int(ctx.attr("transB", 0))
    ga = gb = gc = None
    if ctx.wants(0):
        if not ta:  # dA = alpha g op(B)^T
            ga = _gemm(ctx, g, bm, alpha=alpha, transB=1 - tb)
        else:  # dA = alpha op(B) g^T
            ga = _gemm(ctx, bm, g, alpha=alpha, transA=tb, transB=1)
    if ctx.wants(1):
        if not tb:  # dB = alpha op(A)^T g
            gb = _gemm(ctx, a, g, alpha=alpha, transA=1 - ta)
        else:  # dB = alpha g^T op(A)
            gb = _gemm(ctx, g, a, alpha=alpha, transA=1, transB=ta)
    if len(ctx.inputs) > 2 and ctx.wants(2):
        gs = g if beta == 1.0 else b.mul(g, b.scalar(beta, g))
        gc = ctx.unbroadcast(gs, 2)
    return [ga, gb, gc][: len(ctx.inputs)]


def _swap_last(ctx: RuleContext, t: str, rank: int) -> str:
    perm = list(range(rank))
    perm[-1], perm[-2] = perm[-2], perm[-1]
    v = ctx.b.constant_value(t)
    if v is not None:  # constant weights: transpose once at build time
        return ctx.b.const(v.transpose(perm).copy(), hint="wT")
    return ctx.b.op("Transpose", [t], perm=perm)


def _promoted_g(ctx: RuleContext, g: str, ra: int, rm: int) -> str:
    """g shaped as the product of the operands promoted as numpy does (a 1-D left operand a row,
    a 1-D right operand a column); each cotangent is reshaped back to its operand at the end."""
    b = ctx.b
    if ra == 1 and rm == 1:
        return b.unsqueeze(g, [0, 1])
    if ra == 1:
        return b.unsqueeze(g, [-2] if ctx.opset >= 13 else [ctx.rank(ctx.y()) - 1])
    if rm == 1:
        return b.unsqueeze(g, [-1] if ctx.opset >= 13 else [ctx.rank(ctx.y())])
    return g


def _matmul_lhs(ctx: RuleContext, g: str) -> str:
    """dA = g @ M^T, summed over the batch axes A was broadcast on."""
    a, m = ctx.x(0), ctx.x(1)
    ra, rm = ctx.rank(a), ctx.rank(m)
    m2 = ctx.b.unsqueeze(m, [1]) if rm == 1 else m
    d = ctx.b.op("MatMul", [_promoted_g(ctx, g, ra, rm), _swap_last(ctx, m2, max(rm, 2))])
    return _reduce_to(ctx, d, a, ra, max(ra, 2), max(ra, rm, 2))


def _matmul_rhs(ctx: RuleContext, g: str) -> str:
    """dM = A^T @ g, summed over the batch axes M was broadcast on."""
    a, m = ctx.x(0), ctx.x(1)
    ra, rm = ctx.rank(a), ctx.rank(m)
    a2 = ctx.b.unsqueeze(a, [0]) if ra == 1 else a
    d = ctx.b.op("MatMul", [_swap_last(ctx, a2, max(ra, 2)), _promoted_g(ctx, g, ra, rm)])
    return _reduce_to(ctx, d, m, rm, max(rm, 2), max(ra, rm, 2))


defbilinear("MatMul", lhs=_matmul_lhs, rhs=_matmul_rhs)


def _reduce_to(ctx: RuleContext, d: str, target: str, rank: int, rank2: int, out_rank: int) -> str:
    """Sum the batch axes `target` was broadcast over, then reshape to its shape."""
    b = ctx.b
    ts = b.static_shape(target) or ()
    os_ = b.static_shape(ctx.y())
    lead = out_rank - rank2
    axes = list(range(lead))
    tbatch = list(ts[: rank2 - 2]) if rank2 == rank else []
    obatch = list(os_[lead : out_rank - 2]) if os_ is not None and len(os_) == out_rank else None
    dynamic = False
    for i, td in enumerate(tbatch):
        od = obatch[i] if obatch is not None else None
        if td == 1 and od != 1:
            axes.append(lead + i)
        elif not (isinstance(td, int) and td == od) and not (td is not None and td == od):
            dynamic = True
    if dynamic:  # unknown batch broadcast: the shared run-time un-broadcast
        return _dynamic_reduce(ctx, d, target)
    if axes:
        d = b.reduce_sum(d, axes, keepdims=True)
    if axes[:lead] or rank != rank2:
        d = b.reshape_like(d, target)
    return d


def _dynamic_reduce(ctx: RuleContext, d: str, target: str) -> str:
    b = ctx.b
    if ctx.opset < 13:
        ctx.fail("broadcast batch dims of unknown size need opset >= 13")
    tshape = b.shape(target)
    rd, rt = ctx.rank(ctx.y()), ctx.rank(target)
    if rt < 2:
        tshape = b.op("Concat", [tshape, b.ints([1])], axis=0) if rt == 1 else tshape
    pad = rd - max(rt, 2)
    full = b.op("Concat", [b.ints([1] * pad), tshape], axis=0) if pad > 0 else tshape
    batch = b.op("Slice", [full, b.ints([0]), b.ints([-2]), b.ints([0])])
    dbatch = b.op("Slice", [b.shape(d), b.ints([0]), b.ints([-2]), b.ints([0])])
    neq = b.op("Not", [b.op("Equal", [batch, dbatch])])
    axes = b.op("Reshape", [b.op("NonZero", [neq]), b.ints([-1])])
    return b.reshape_like(b.reduce_sum_dynamic(d, axes), target)
