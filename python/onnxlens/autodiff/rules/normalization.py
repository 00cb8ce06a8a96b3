"""BatchNormalization (inference), LayerNormalization, InstanceNormalization."""

from __future__ import annotations

from ..registry import InputGrads, RuleContext, register


def _channel_shape(ctx: RuleContext, rank: int) -> list[int]:
    return [-1] + [1] * (rank - 2)


@register("BatchNormalization")
def batch_norm(ctx: RuleContext, grads: list[str]) -> InputGrads:
    b, x, g = ctx.b, ctx.x(), grads[0]
    if int(ctx.attr("training_mode", 0)):
        ctx.fail("training-mode batch statistics are not supported; export the model in eval mode")
    if any(ctx.wants(i) for i in range(1, 5)):
        ctx.fail("gradients w.r.t. the BatchNormalization parameters are not implemented")
    eps = float(ctx.attr("epsilon", 1e-5))
    scale, var = ctx.x(1), ctx.x(4)
    # scale / sqrt(var + eps) per channel: constant-folded by ORT when the params are weights.
    factor = b.op("Div", [scale, b.op("Sqrt", [b.op("Add", [var, b.scalar(eps, var)])])])
    rank = ctx.rank(x)
    factor = b.op("Reshape", [factor, b.ints(_channel_shape(ctx, rank))]) if rank > 2 else factor
    return [b.mul(g, factor), None, None, None, None]


def _normalize_backward(
    ctx: RuleContext, g: str, x: str, scale_b: str, axes: list[int], eps: float
) -> tuple[str, str, str]:
    """dx for y = xhat * scale (xhat normalised over `axes`); returns (dx, xhat, g*scale)."""
    b = ctx.b
    mu = b.reduce_mean(x, axes)
    xc = b.op("Sub", [x, mu])
    var = b.reduce_mean(b.mul(xc, xc), axes)
    inv = b.op("Reciprocal", [b.op("Sqrt", [b.op("Add", [var, b.scalar(eps, x)])])])
    xhat = b.mul(xc, inv)
    gh = b.mul(g, scale_b)
    m1 = b.reduce_mean(gh, axes)
    m2 = b.reduce_mean(b.mul(gh, xhat), axes)
    dx = b.mul(inv, b.op("Sub", [b.op("Sub", [gh, m1]), b.mul(xhat, m2)]))
    return dx, xhat, gh


@register("LayerNormalization")
def layer_norm(ctx: RuleContext, grads: list[str]) -> InputGrads:
    b, x, g = ctx.b, ctx.x(), grads[0]
    rank = ctx.rank(x)
    axis = int(ctx.attr("axis", -1))
    axis = axis + rank if axis < 0 else axis
    axes = list(range(axis, rank))
    scale = ctx.x(1)
    dx, xhat, _ = _normalize_backward(ctx, g, x, scale, axes, float(ctx.attr("epsilon", 1e-5)))
    out: InputGrads = [dx if ctx.wants(0) else None, None, None]
    if ctx.wants(1):
        out[1] = ctx.unbroadcast(b.mul(g, xhat), 1)
    if len(ctx.inputs) > 2 and ctx.x(2) and ctx.wants(2):
        out[2] = ctx.unbroadcast(g, 2)
    return out[: len(ctx.inputs)]


@register("InstanceNormalization")
def instance_norm(ctx: RuleContext, grads: list[str]) -> InputGrads:
    b, x, g = ctx.b, ctx.x(), grads[0]
    if ctx.wants(1) or ctx.wants(2):
        ctx.fail("gradients w.r.t. the InstanceNormalization parameters are not implemented")
    rank = ctx.rank(x)
    scale = b.op("Reshape", [ctx.x(1), b.ints(_channel_shape(ctx, rank))])
    dx, _, _ = _normalize_backward(
        ctx, g, x, scale, list(range(2, rank)), float(ctx.attr("epsilon", 1e-5))
    )
    return [dx, None, None]


@register("LpNormalization")
def lp_norm(ctx: RuleContext, grads: list[str]) -> InputGrads:
    b, x, y, g = ctx.b, ctx.x(), ctx.y(), grads[0]
    if int(ctx.attr("p", 2)) != 2:
        ctx.fail("only p=2 is supported")
    axis = int(ctx.attr("axis", -1))
    norm = (
        b.op("ReduceL2", [x], axes=[axis], keepdims=1)
        if ctx.opset < 18
        else b.op("ReduceL2", [x, b.ints([axis])], keepdims=1)
    )
    dot = b.reduce_sum(b.mul(g, y), [axis])
    return [b.op("Div", [b.op("Sub", [g, b.mul(y, dot)]), norm])]
