"""ReduceSum, ReduceMean, ReduceMax/Min, ReduceL2, ReduceSumSquare: axes as attribute or input,
keepdims, noop_with_empty_axes."""

from __future__ import annotations

import numpy as np

from ..registry import InputGrads, RuleContext, deflinear, register
from .elementwise import is_extreme

_AXES_INPUT_SINCE = {"ReduceSum": 13}


def _axes(ctx: RuleContext) -> list[int] | None:
    """Normalised reduced axes; None means every axis; [] means nothing reduced (noop)."""
    rank = ctx.rank(ctx.x())
    since = _AXES_INPUT_SINCE.get(ctx.node.op_type, 18)
    if ctx.opset >= since:
        if len(ctx.inputs) > 1 and ctx.x(1):
            axes = [int(a) for a in np.asarray(ctx.const_input(1, "axes")).reshape(-1)]
        else:
            axes = []
        if not axes:
            return [] if int(ctx.attr("noop_with_empty_axes", 0)) else list(range(rank))
    else:
        axes = list(ctx.attr("axes") or range(rank))
    return sorted(a + rank if a < 0 else a for a in axes)


def _expand_back(ctx: RuleContext, g: str, axes: list[int]) -> str:
    """g with the reduced axes re-inserted (size 1) when keepdims=0."""
    if not int(ctx.attr("keepdims", 1)) and axes:
        g = ctx.b.unsqueeze(g, axes)
    return g


@deflinear("ReduceSum", "ReduceMean")
def reduce_sum_mean(ctx: RuleContext, g: str) -> str:
    b, x = ctx.b, ctx.x()
    axes = _axes(ctx)
    if not axes:
        return g
    gk = _expand_back(ctx, g, axes)
    if ctx.node.op_type == "ReduceMean":
        s = b.static_shape(x)
        dims = [s[a] for a in axes] if s is not None else [None]
        known = [d for d in dims if isinstance(d, int) and d > 0]
        if len(known) == len(dims):
            gk = b.mul(gk, b.scalar(1.0 / float(np.prod(known)), x))
        else:
            n = b.op("Div", [b.numel(x), b.numel(ctx.y())])
            gk = b.op("Div", [gk, b.op("Cast", [n], to=b.elem_type(x))])
    return b.expand_like(gk, x)


@register("ReduceMax", "ReduceMin")
def reduce_max(ctx: RuleContext, grads: list[str]) -> InputGrads:
    """Ties share the gradient equally, as torch.amax/amin do."""
    b, x, g = ctx.b, ctx.x(), grads[0]
    axes = _axes(ctx)
    if not axes:
        return ctx.first(g)
    yk = _expand_back(ctx, ctx.y(), axes)
    gk = _expand_back(ctx, g, axes)
    hit = is_extreme(ctx, x, yk, ctx.node.op_type == "ReduceMax")
    mask = b.op("Cast", [hit], to=b.elem_type(x))
    cnt = b.reduce_sum(mask, axes, keepdims=True)
    return ctx.first(b.mul(mask, b.op("Div", [gk, cnt])))


@register("ReduceSumSquare")
def reduce_sum_square(ctx: RuleContext, grads: list[str]) -> InputGrads:
    b, x, g = ctx.b, ctx.x(), grads[0]
    axes = _axes(ctx)
    gk = _expand_back(ctx, g, axes) if axes else g
    return ctx.first(b.mul(b.mul(gk, b.scalar(2.0, x)), x))


@register("ReduceL2")
def reduce_l2(ctx: RuleContext, grads: list[str]) -> InputGrads:
    b, x, g = ctx.b, ctx.x(), grads[0]
    axes = _axes(ctx)
    gk = _expand_back(ctx, g, axes) if axes else g
    yk = _expand_back(ctx, ctx.y(), axes) if axes else ctx.y()
    return ctx.first(b.mul(x, b.op("Div", [gk, yk])))
