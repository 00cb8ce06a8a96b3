"""The ReLU family and smooth activations; the guided-backprop and deconvnet overlays.

Masks come from primal values the forward pass already computed (Relu: its output y > 0), so
each backward is one or two elementwise nodes.
"""

from __future__ import annotations

import math

import numpy as np

from ..registry import Key, Rule, RuleContext, register

G = list[str | None]


def _gt0(ctx: RuleContext, t: str) -> str:
    return ctx.b.op("Greater", [t, ctx.b.scalar(0.0, t)])


@register("Relu")
def relu(ctx: RuleContext, grads: G) -> G:
    return [ctx.b.where_zero(_gt0(ctx, ctx.y()), grads[0])]  # type: ignore[arg-type]


@register("LeakyRelu")
def leaky_relu(ctx: RuleContext, grads: G) -> G:
    b, g = ctx.b, grads[0]
    alpha = float(ctx.attr("alpha", 0.01))
    return [b.select(_gt0(ctx, ctx.x()), g, b.mul(g, b.scalar(alpha, ctx.x())))]  # type: ignore[list-item]


@register("PRelu")
def prelu(ctx: RuleContext, grads: G) -> G:
    b, g = ctx.b, grads[0]
    assert g is not None
    pos = _gt0(ctx, ctx.x())
    gx = b.select(pos, g, b.mul(g, ctx.x(1))) if ctx.wants(0) else None
    gs = None
    if ctx.wants(1):
        gs = ctx.unbroadcast(b.where_zero(pos, b.mul(g, ctx.x()), otherwise_zero_first=True), 1)
    return [gx, gs]


@register("ThresholdedRelu")
def thresholded_relu(ctx: RuleContext, grads: G) -> G:
    b = ctx.b
    cond = b.op("Greater", [ctx.x(), b.scalar(float(ctx.attr("alpha", 1.0)), ctx.x())])
    return [b.where_zero(cond, grads[0])]  # type: ignore[arg-type]


@register("Clip")
def clip(ctx: RuleContext, grads: G) -> G:
    """Gradient where min <= x <= max (inclusive, as torch.clamp); none to min/max."""
    b, x, g = ctx.b, ctx.x(), grads[0]
    assert g is not None
    conds: list[str] = []
    if ctx.opset < 11:
        lo, hi = ctx.attr("min"), ctx.attr("max")
        if lo is not None:
            conds.append(
                b.op("GreaterOrEqual", [x, b.scalar(float(lo), x)])
                if ctx.opset >= 12
                else b.op("Not", [b.op("Less", [x, b.scalar(float(lo), x)])])
            )
        if hi is not None:
            conds.append(b.op("Not", [b.op("Greater", [x, b.scalar(float(hi), x)])]))
    else:
        if ctx.x(1):
            conds.append(b.op("Not", [b.op("Less", [x, ctx.x(1)])]))
        if ctx.x(2):
            conds.append(b.op("Not", [b.op("Greater", [x, ctx.x(2)])]))
    if not conds:
        return [g] + [None] * (len(ctx.inputs) - 1)
    cond = conds[0] if len(conds) == 1 else b.op("And", conds)
    return [b.where_zero(cond, g)] + [None] * (len(ctx.inputs) - 1)


@register("Sigmoid")
def sigmoid(ctx: RuleContext, grads: G) -> G:
    b, y = ctx.b, ctx.y()
    return [b.mul(grads[0], b.mul(y, b.op("Sub", [b.scalar(1.0, y), y])))]  # type: ignore[arg-type]


@register("HardSigmoid")
def hard_sigmoid(ctx: RuleContext, grads: G) -> G:
    b, y = ctx.b, ctx.y()
    alpha = float(ctx.attr("alpha", 0.2))
    inside = b.op("And", [_gt0(ctx, y), b.op("Less", [y, b.scalar(1.0, y)])])
    return [b.where_zero(inside, b.mul(grads[0], b.scalar(alpha, y)))]  # type: ignore[arg-type]


@register("HardSwish")
def hard_swish(ctx: RuleContext, grads: G) -> G:
    """torch.nn.functional.hardswish backward: 0 below -3, x/3 + 1/2 up to 3 (inclusive), 1 above."""
    b, x, g = ctx.b, ctx.x(), grads[0]
    assert g is not None
    mid = b.mul(g, b.op("Add", [b.mul(x, b.scalar(1.0 / 3.0, x)), b.scalar(0.5, x)]))
    upper = b.select(b.op("Greater", [x, b.scalar(3.0, x)]), g, mid)
    if b.opset >= 12:  # one pass fewer than Not(Less)
        return [b.where_zero(b.op("GreaterOrEqual", [x, b.scalar(-3.0, x)]), upper)]
    return [b.where_zero(b.op("Less", [x, b.scalar(-3.0, x)]), upper, otherwise_zero_first=True)]


@register("Tanh")
def tanh(ctx: RuleContext, grads: G) -> G:
    b, y = ctx.b, ctx.y()
    return [b.mul(grads[0], b.op("Sub", [b.scalar(1.0, y), b.mul(y, y)]))]  # type: ignore[arg-type]


@register("Elu")
def elu(ctx: RuleContext, grads: G) -> G:
    b, g, y = ctx.b, grads[0], ctx.y()
    alpha = float(ctx.attr("alpha", 1.0))
    neg = b.mul(g, b.op("Add", [y, b.scalar(alpha, y)]))
    return [b.select(_gt0(ctx, ctx.x()), g, neg)]  # type: ignore[list-item]


@register("Selu")
def selu(ctx: RuleContext, grads: G) -> G:
    b, g, y = ctx.b, grads[0], ctx.y()
    alpha = float(ctx.attr("alpha", 1.67326319217681884765625))
    gamma = float(ctx.attr("gamma", 1.05070102214813232421875))
    pos = b.mul(g, b.scalar(gamma, y))
    neg = b.mul(g, b.op("Add", [y, b.scalar(alpha * gamma, y)]))
    return [b.select(_gt0(ctx, ctx.x()), pos, neg)]  # type: ignore[list-item]


@register("Celu")
def celu(ctx: RuleContext, grads: G) -> G:
    b, g, y = ctx.b, grads[0], ctx.y()
    alpha = float(ctx.attr("alpha", 1.0))
    neg = b.mul(g, b.op("Add", [b.mul(y, b.scalar(1.0 / alpha, y)), b.scalar(1.0, y)]))
    return [b.select(_gt0(ctx, ctx.x()), g, neg)]  # type: ignore[list-item]


@register("Softplus")
def softplus(ctx: RuleContext, grads: G) -> G:
    return [ctx.b.mul(grads[0], ctx.b.op("Sigmoid", [ctx.x()]))]  # type: ignore[arg-type]


@register("Softsign")
def softsign(ctx: RuleContext, grads: G) -> G:
    b, x = ctx.b, ctx.x()
    d = b.op("Add", [b.scalar(1.0, x), b.op("Abs", [x])])
    return [b.op("Div", [grads[0], b.mul(d, d)])]  # type: ignore[list-item]


@register("Mish")
def mish(ctx: RuleContext, grads: G) -> G:
    b, x = ctx.b, ctx.x()
    t = b.op("Tanh", [b.op("Softplus", [x])])
    d = b.op(
        "Add",
        [t, b.mul(b.mul(x, b.op("Sigmoid", [x])), b.op("Sub", [b.scalar(1.0, x), b.mul(t, t)]))],
    )
    return [b.mul(grads[0], d)]  # type: ignore[arg-type]


@register("Gelu")
def gelu(ctx: RuleContext, grads: G) -> G:
    b, x = ctx.b, ctx.x()
    s = lambda v: b.scalar(v, x)  # noqa: E731
    if ctx.attr("approximate", "none") == "tanh":
        k = math.sqrt(2.0 / math.pi)
        x2 = b.mul(x, x)
        u = b.mul(b.mul(x, b.op("Add", [s(1.0), b.mul(x2, s(0.044715))])), s(k))
        t = b.op("Tanh", [u])
        du = b.mul(b.op("Add", [s(1.0), b.mul(x2, s(3 * 0.044715))]), s(k))
        d = b.op(
            "Add",
            [
                b.mul(b.op("Add", [s(1.0), t]), s(0.5)),
                b.mul(b.mul(b.mul(x, s(0.5)), b.op("Sub", [s(1.0), b.mul(t, t)])), du),
            ],
        )
    else:
        cdf = b.mul(b.op("Add", [s(1.0), b.erf(b.mul(x, s(1.0 / math.sqrt(2.0))))]), s(0.5))
        pdf = b.mul(b.op("Exp", [b.mul(b.mul(x, x), s(-0.5))]), s(1.0 / math.sqrt(2.0 * math.pi)))
        d = b.op("Add", [cdf, b.mul(x, pdf)])
    return [b.mul(grads[0], d)]  # type: ignore[arg-type]


# -- attribution rule sets --------------------------------------------------------------------


def guided_relu(ctx: RuleContext, grads: G) -> G:
    """Guided backprop (Springenberg et al. 2015, eq. 3): pass where input > 0 and gradient > 0."""
    b = ctx.b
    return [b.where_zero(_gt0(ctx, ctx.y()), b.op("Relu", [grads[0]]))]  # type: ignore[list-item]


def deconvnet_relu(ctx: RuleContext, grads: G) -> G:
    """Deconvnet (Zeiler & Fergus 2014): relu of the gradient, ignoring the forward input."""
    return [ctx.b.op("Relu", [grads[0]])]  # type: ignore[list-item]


def _is_relu6(ctx: RuleContext) -> bool:
    """A Clip whose lower bound is a constant 0 (ReLU6 and friends): a member of the ReLU family."""
    if ctx.opset < 11:
        lo = ctx.attr("min")
    else:
        lo = ctx.b.constant_value(ctx.x(1)) if ctx.x(1) else None
    return lo is not None and float(np.asarray(lo)) == 0.0


def guided_clip(ctx: RuleContext, grads: G) -> G:
    """Guided backprop through ReLU6: the usual Clip mask, and only positive gradients."""
    if not _is_relu6(ctx):
        return clip(ctx, grads)
    return clip(ctx, [ctx.b.op("Relu", [grads[0]])])  # type: ignore[list-item]


def deconvnet_clip(ctx: RuleContext, grads: G) -> G:
    """Deconvnet through ReLU6: relu of the gradient, ignoring the forward input."""
    if not _is_relu6(ctx):
        return clip(ctx, grads)
    return [ctx.b.op("Relu", [grads[0]])] + [None] * (len(ctx.inputs) - 1)  # type: ignore[list-item]


def guided_overlay() -> dict[Key | str, Rule]:
    # Relu as captum's GuidedBackprop (which overrides nn.ReLU modules); ReLU6 exports as
    # Clip(0, 6), which MobileNets and EfficientNet-Lite use instead of Relu.
    return {"Relu": guided_relu, "Clip": guided_clip}


def deconvnet_overlay() -> dict[Key | str, Rule]:
    return {"Relu": deconvnet_relu, "Clip": deconvnet_clip}
