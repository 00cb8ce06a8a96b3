"""Softmax and LogSoftmax for every opset: opset >= 13 normalise along `axis`; before 13 the input
is coerced to 2-D at `axis`, so the normalisation runs over all axes from `axis` on."""

from __future__ import annotations

from ..registry import InputGrads, RuleContext, register


def _axes(ctx: RuleContext) -> list[int]:
    rank = ctx.rank(ctx.x())
    if ctx.opset >= 13:
        a = int(ctx.attr("axis", -1))
        return [a + rank if a < 0 else a]
    a = int(ctx.attr("axis", 1))
    a = a + rank if a < 0 else a
    return list(range(a, rank))


def _coerced(ctx: RuleContext, g: str) -> tuple[str, str, list[int], bool]:
    """(g, y, axes, reshaped): before opset 13 with an unknown rank, work on the 2-D coercion
    Flatten(axis) itself, which needs no rank, and reshape back afterwards."""
    b = ctx.b
    if ctx.opset < 13 and b.rank(ctx.x()) is None:
        a = int(ctx.attr("axis", 1))
        return b.op("Flatten", [g], axis=a), b.op("Flatten", [ctx.y()], axis=a), [1], True
    return g, ctx.y(), _axes(ctx), False


@register("Softmax")
def softmax(ctx: RuleContext, grads: list[str]) -> InputGrads:
    b = ctx.b
    g, y, axes, flat = _coerced(ctx, grads[0])
    gy = b.mul(g, y)
    dx = b.op("Sub", [gy, b.mul(y, b.reduce_sum(gy, axes))])
    return [b.op("Reshape", [dx, b.shape(ctx.x())]) if flat else dx]


@register("LogSoftmax")
def log_softmax(ctx: RuleContext, grads: list[str]) -> InputGrads:
    b = ctx.b
    g, y, axes, flat = _coerced(ctx, grads[0])
    dx = b.op("Sub", [g, b.mul(b.op("Exp", [y]), b.reduce_sum(g, axes))])
    return [b.op("Reshape", [dx, b.shape(ctx.x())]) if flat else dx]
