"""Softmax and LogSoftmax for every opset: opset >= 13 normalise along `axis`; before 13 the input
is coerced to 2-D at `axis`, so the normalisation runs over all axes from `axis` on."""

from __future__ import annotations

from ..registry import RuleContext, register

G = list[str | None]


def _axes(ctx: RuleContext) -> list[int]:
    rank = ctx.rank(ctx.x())
    if ctx.opset >= 13:
        a = int(ctx.attr("axis", -1))
        return [a + rank if a < 0 else a]
    a = int(ctx.attr("axis", 1))
    a = a + rank if a < 0 else a
    return list(range(a, rank))


@register("Softmax")
def softmax(ctx: RuleContext, grads: G) -> G:
    b, y, g = ctx.b, ctx.y(), grads[0]
    assert g is not None
    gy = b.mul(g, y)
    return [b.op("Sub", [gy, b.mul(y, b.reduce_sum(gy, _axes(ctx)))])]


@register("LogSoftmax")
def log_softmax(ctx: RuleContext, grads: G) -> G:
    b, y, g = ctx.b, ctx.y(), grads[0]
    assert g is not None
    return [b.op("Sub", [g, b.mul(b.op("Exp", [y]), b.reduce_sum(g, _axes(ctx)))])]
