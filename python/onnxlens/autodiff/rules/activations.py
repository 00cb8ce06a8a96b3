"""The ReLU family and smooth activations; the guided-backprop and deconvnet overlays.

Masks come from primal values the forward pass already computed (Relu: its output y > 0) and,
for float32, are built by `GraphBuilder.step` from HardSigmoid, Mul, Add and BatchNormalization,
the elementwise ops ORT keeps in its blocked NCHWc layout: a Greater/Cast/Where mask forces the
saved activation out of that layout and the gradient back in, which cost more than the masks.

Kinks follow torch 2.x: Relu and LeakyRelu pass the gradient where x > 0; HardSwish is 0 up to
-3, x/3 + 1/2 strictly between, 1 from 3 on; HardSigmoid and Clip (ReLU6 and relatives) pass it
strictly inside their linear part, as torch's hardsigmoid and hardtanh.
"""

from __future__ import annotations

import math

import numpy as np

from ..registry import InputGrads, Key, Rule, RuleContext, defelementwise, register


def _gt0(ctx: RuleContext, t: str) -> str:
    return ctx.b.op("Greater", [t, ctx.b.scalar(0.0, t)])


@defelementwise("Relu")
def _relu_mask(ctx: RuleContext) -> str:
    """[x > 0] of a Relu, read from its output (y > 0 iff x > 0)."""
    return ctx.b.step(ctx.y(), 0.0, above=True)


@defelementwise("LeakyRelu")
def leaky_relu(ctx: RuleContext) -> str:
    """alpha + (1 - alpha) [x > 0]; with alpha > 0, x > 0 iff y > 0."""
    b = ctx.b
    alpha = float(ctx.attr("alpha", 0.01))
    src = ctx.y() if alpha > 0 else ctx.x()
    return b.affine(b.step(src, 0.0, above=True), 1.0 - alpha, alpha, like=src)


@register("PRelu")
def prelu(ctx: RuleContext, grads: list[str]) -> InputGrads:
    b, g = ctx.b, grads[0]
    pos = _gt0(ctx, ctx.x())
    gx = b.select(pos, g, b.mul(g, ctx.x(1))) if ctx.wants(0) else None
    gs = None
    if ctx.wants(1):
        gs = ctx.unbroadcast(b.where_zero(pos, b.mul(g, ctx.x()), otherwise_zero_first=True), 1)
    return [gx, gs]


@register("ThresholdedRelu")
def thresholded_relu(ctx: RuleContext, grads: list[str]) -> InputGrads:
    b = ctx.b
    cond = b.op("Greater", [ctx.x(), b.scalar(float(ctx.attr("alpha", 1.0)), ctx.x())])
    return [b.where_zero(cond, grads[0])]


def _clip_bounds(ctx: RuleContext) -> list[tuple[float | str, bool]]:
    """(bound, is_lower) for each bound the Clip has: a float when constant, else its tensor."""
    if ctx.opset < 11:
        found = [(ctx.attr("min"), True), (ctx.attr("max"), False)]
        return [(float(v), low) for v, low in found if v is not None]
    out: list[tuple[float | str, bool]] = []
    for i, low in ((1, True), (2, False)):
        name = ctx.x(i)
        if name:
            v = ctx.b.constant_value(name)
            out.append((float(np.asarray(v)) if v is not None else name, low))
    return out


def _clip_mask(ctx: RuleContext) -> str | None:
    """[min < x < max] read from the output y (the same set: y is x there and a bound outside),
    so the forward Conv keeps its fused Clip. Strict, as torch's hardtanh/ReLU6 backward."""
    b, y = ctx.b, ctx.y()
    mask = None
    for bound, low in _clip_bounds(ctx):
        if isinstance(bound, float):
            m = b.step(y, bound, above=low)
        else:
            m = b.op("Cast", [b.op("Greater" if low else "Less", [y, bound])], to=b.elem_type(y))
        mask = m if mask is None else b.mul(mask, m)
    return mask


@register("Clip")
def clip(ctx: RuleContext, grads: list[str]) -> InputGrads:
    """Gradient where min < x < max (as torch's hardtanh and ReLU6); none to min/max."""
    g, mask = grads[0], _clip_mask(ctx)
    return ctx.first(g if mask is None else ctx.b.mul(g, mask))


@defelementwise("Sigmoid")
def sigmoid(ctx: RuleContext) -> str:
    b, y = ctx.b, ctx.y()
    return b.mul(y, b.op("Sub", [b.scalar(1.0, y), y]))


@defelementwise("HardSigmoid")
def hard_sigmoid(ctx: RuleContext) -> str:
    """alpha strictly inside the linear part, -beta/alpha < x < (1 - beta)/alpha. The mask reads
    x, not y: y rounds to 0 or 1 a few ulps inside the bounds (torch's hardsigmoid: |x| < 3)."""
    b, x = ctx.b, ctx.x()
    alpha, beta = float(ctx.attr("alpha", 0.2)), float(ctx.attr("beta", 0.5))
    if alpha == 0:
        return b.scalar(0.0, x)
    lo, hi = sorted((-beta / alpha, (1.0 - beta) / alpha))
    inside = b.mul(b.step(x, lo, above=True), b.step(x, hi, above=False))
    return b.mul(inside, b.scalar(alpha, x))


@defelementwise("HardSwish")
def hard_swish(ctx: RuleContext) -> str:
    """torch's hardswish backward: 0 up to -3, x/3 + 1/2 strictly between, 1 from 3 on.

    As d = 2u - ([x > -3] + [x >= 3]) / 2 with u = HardSigmoid(x, 1/6, 1/2): in float32 seven
    passes that all stay in ORT's NCHWc layout (HardSigmoid, Add, BatchNormalization, Mul)."""
    b, x = ctx.b, ctx.x()
    u = b.op("HardSigmoid", [x], alpha=1.0 / 6.0, beta=0.5)
    steps = b.op("Add", [b.step(x, -3.0, above=True), b.step(x, 3.0, above=True, inclusive=True)])
    return b.op("Add", [b.op("Add", [b.affine(steps, -0.5, 0.0, like=x), u]), u])


@defelementwise("Tanh")
def tanh(ctx: RuleContext) -> str:
    b, y = ctx.b, ctx.y()
    return b.op("Sub", [b.scalar(1.0, y), b.mul(y, y)])


@register("Elu")
def elu(ctx: RuleContext, grads: list[str]) -> InputGrads:
    b, g, y = ctx.b, grads[0], ctx.y()
    alpha = float(ctx.attr("alpha", 1.0))
    neg = b.mul(g, b.op("Add", [y, b.scalar(alpha, y)]))
    return [b.select(_gt0(ctx, ctx.x()), g, neg)]


@register("Selu")
def selu(ctx: RuleContext, grads: list[str]) -> InputGrads:
    b, g, y = ctx.b, grads[0], ctx.y()
    alpha = float(ctx.attr("alpha", 1.67326319217681884765625))
    gamma = float(ctx.attr("gamma", 1.05070102214813232421875))
    pos = b.mul(g, b.scalar(gamma, y))
    neg = b.mul(g, b.op("Add", [y, b.scalar(alpha * gamma, y)]))
    return [b.select(_gt0(ctx, ctx.x()), pos, neg)]


@register("Celu")
def celu(ctx: RuleContext, grads: list[str]) -> InputGrads:
    b, g, y = ctx.b, grads[0], ctx.y()
    alpha = float(ctx.attr("alpha", 1.0))
    neg = b.mul(g, b.op("Add", [b.mul(y, b.scalar(1.0 / alpha, y)), b.scalar(1.0, y)]))
    return [b.select(_gt0(ctx, ctx.x()), g, neg)]


@defelementwise("Softplus")
def softplus(ctx: RuleContext) -> str:
    return ctx.b.op("Sigmoid", [ctx.x()])


@register("Softsign")
def softsign(ctx: RuleContext, grads: list[str]) -> InputGrads:
    b, x = ctx.b, ctx.x()
    d = b.op("Add", [b.scalar(1.0, x), b.op("Abs", [x])])
    return [b.op("Div", [grads[0], b.mul(d, d)])]


@defelementwise("Mish")
def mish(ctx: RuleContext) -> str:
    b, x = ctx.b, ctx.x()
    t = b.op("Tanh", [b.op("Softplus", [x])])
    sech2 = b.op("Sub", [b.scalar(1.0, x), b.mul(t, t)])
    return b.op("Add", [t, b.mul(b.mul(x, b.op("Sigmoid", [x])), sech2)])


@defelementwise("Gelu")
def gelu(ctx: RuleContext) -> str:
    b, x = ctx.b, ctx.x()
    s = lambda v: b.scalar(v, x)  # noqa: E731
    if ctx.attr("approximate", "none") == "tanh":
        k = math.sqrt(2.0 / math.pi)
        x2 = b.mul(x, x)
        u = b.mul(b.mul(x, b.op("Add", [s(1.0), b.mul(x2, s(0.044715))])), s(k))
        t = b.op("Tanh", [u])
        du = b.mul(b.op("Add", [s(1.0), b.mul(x2, s(3 * 0.044715))]), s(k))
        return b.op(
            "Add",
            [
                b.mul(b.op("Add", [s(1.0), t]), s(0.5)),
                b.mul(b.mul(b.mul(x, s(0.5)), b.op("Sub", [s(1.0), b.mul(t, t)])), du),
            ],
        )
    cdf = b.mul(b.op("Add", [s(1.0), b.erf(b.mul(x, s(1.0 / math.sqrt(2.0))))]), s(0.5))
    pdf = b.mul(b.op("Exp", [b.mul(b.mul(x, x), s(-0.5))]), s(1.0 / math.sqrt(2.0 * math.pi)))
    return b.op("Add", [cdf, b.mul(x, pdf)])


# -- attribution rule sets --------------------------------------------------------------------


def guided_relu(ctx: RuleContext, grads: list[str]) -> InputGrads:
    """Guided backprop (Springenberg et al. 2015, eq. 3): pass where input > 0 and gradient > 0."""
    return [ctx.b.mul(ctx.b.op("Relu", [grads[0]]), _relu_mask(ctx))]


def deconvnet_relu(ctx: RuleContext, grads: list[str]) -> InputGrads:
    """Deconvnet (Zeiler & Fergus 2014): relu of the gradient, ignoring the forward input."""
    return [ctx.b.op("Relu", [grads[0]])]


def _is_relu6(ctx: RuleContext) -> bool:
    """A Clip whose lower bound is a constant 0 (ReLU6 and friends): a member of the ReLU family."""
    return any(low and bound == 0.0 for bound, low in _clip_bounds(ctx))


def guided_clip(ctx: RuleContext, grads: list[str]) -> InputGrads:
    """Guided backprop through ReLU6: the usual Clip mask, and only positive gradients."""
    if not _is_relu6(ctx):
        return clip(ctx, grads)
    return clip(ctx, [ctx.b.op("Relu", [grads[0]])])


def deconvnet_clip(ctx: RuleContext, grads: list[str]) -> InputGrads:
    """Deconvnet through ReLU6: relu of the gradient, ignoring the forward input."""
    if not _is_relu6(ctx):
        return clip(ctx, grads)
    return ctx.first(ctx.b.op("Relu", [grads[0]]))


def guided_overlay() -> dict[Key | str, Rule]:
    # Relu as captum's GuidedBackprop (which overrides nn.ReLU modules); ReLU6 exports as
    # Clip(0, 6), which MobileNets and EfficientNet-Lite use instead of Relu.
    return {"Relu": guided_relu, "Clip": guided_clip}


def deconvnet_overlay() -> dict[Key | str, Rule]:
    return {"Relu": deconvnet_relu, "Clip": deconvnet_clip}
