"""Arithmetic with broadcasting: Add, Sub, Mul, Div, Neg, Pow, Sqrt, Exp, Log, Reciprocal, ..."""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..registry import (
    InputGrads,
    RuleContext,
    defbilinear,
    defelementwise,
    deflinear,
    deflinear_sum,
    register,
)


@deflinear_sum("Add", "Sub", "Sum", "Mean")
def sum_weights(ctx: RuleContext) -> Sequence[float]:
    n, op = len(ctx.inputs), ctx.node.op_type
    if op == "Sub":
        return [1.0, -1.0]
    return [1.0 / n if op == "Mean" else 1.0] * n


defbilinear(
    "Mul",
    lhs=lambda ctx, g: ctx.unbroadcast(ctx.b.mul(g, ctx.x(1)), 0),
    rhs=lambda ctx, g: ctx.unbroadcast(ctx.b.mul(g, ctx.x(0)), 1),
)


@register("Div")
def div(ctx: RuleContext, grads: list[str]) -> InputGrads:
    b, g = ctx.b, grads[0]
    ga = ctx.unbroadcast(b.op("Div", [g, ctx.x(1)]), 0) if ctx.wants(0) else None
    gb = None
    if ctx.wants(1):  # d(a/b)/db = -(a/b)/b, from the primal output
        gb = ctx.unbroadcast(b.neg(b.op("Div", [b.mul(g, ctx.y()), ctx.x(1)])), 1)
    return [ga, gb]


@deflinear("Neg")
def neg(ctx: RuleContext, g: str) -> str:
    return ctx.b.neg(g)


@deflinear("Identity", "Dropout")
def identity(ctx: RuleContext, g: str) -> str:
    if ctx.node.op_type == "Dropout" and len(ctx.inputs) > 2 and ctx.x(2):
        mode = ctx.b.constant_value(ctx.x(2))
        if mode is None or bool(mode):
            ctx.fail("training_mode is not constant false; export the model in eval mode")
    return g


@deflinear("Cast")
def cast(ctx: RuleContext, g: str) -> str:
    return ctx.b.op("Cast", [g], to=ctx.b.elem_type(ctx.x()))


@deflinear("Expand")
def expand(ctx: RuleContext, g: str) -> str:
    return ctx.unbroadcast(g, 0)


@register("Pow")
def pow_(ctx: RuleContext, grads: list[str]) -> InputGrads:
    b, g = ctx.b, grads[0]
    x, e = ctx.x(0), ctx.x(1)
    ga = gb = None
    if ctx.wants(0):
        ev = b.constant_value(e)
        if ev is not None and ev.size == 1 and float(ev) == 2.0:
            d = b.mul(x, b.scalar(2.0, x))
        elif ev is not None and ev.size == 1 and float(ev) == 1.0:
            d = None
        else:
            ec = e if b.elem_type(e) == b.elem_type(x) else b.op("Cast", [e], to=b.elem_type(x))
            d = b.mul(ec, b.op("Pow", [x, b.op("Sub", [ec, b.scalar(1.0, x)])]))
        ga = ctx.unbroadcast(b.mul(g, d) if d else g, 0)
    if ctx.wants(1):
        gb = ctx.unbroadcast(b.mul(b.mul(g, ctx.y()), b.op("Log", [x])), 1)
    return [ga, gb]


@register("Sqrt")
def sqrt(ctx: RuleContext, grads: list[str]) -> InputGrads:
    b = ctx.b
    return [b.op("Div", [b.mul(grads[0], b.scalar(0.5, ctx.y())), ctx.y()])]


@register("Log")
def log(ctx: RuleContext, grads: list[str]) -> InputGrads:
    return [ctx.b.op("Div", [grads[0], ctx.x()])]


@defelementwise("Exp")
def exp(ctx: RuleContext) -> str:
    return ctx.y()


@defelementwise("Reciprocal")
def reciprocal(ctx: RuleContext) -> str:
    b, y = ctx.b, ctx.y()
    return b.neg(b.mul(y, y))


@defelementwise("Abs")
def abs_(ctx: RuleContext) -> str:
    b, x = ctx.b, ctx.x()
    if ctx.opset < 9:  # no Sign yet: [x > 0] - [x < 0]
        pos = b.op("Cast", [b.op("Greater", [x, b.scalar(0.0, x)])], to=b.elem_type(x))
        neg = b.op("Cast", [b.op("Less", [x, b.scalar(0.0, x)])], to=b.elem_type(x))
        return b.op("Sub", [pos, neg])
    return b.op("Sign", [x])


def is_extreme(ctx: RuleContext, x: str, y: str, largest: bool) -> str:
    """x == y for y the max (`largest`) or min of values including x, as a bool tensor. Before
    opset 11 Equal has no float kernels: x is the max iff it is not below it."""
    b = ctx.b
    if ctx.opset >= 11:
        return b.op("Equal", [x, y])
    return b.op("Not", [b.op("Less" if largest else "Greater", [x, y])])


@defelementwise("Erf")
def erf(ctx: RuleContext) -> str:
    b, x = ctx.b, ctx.x()
    return b.mul(b.op("Exp", [b.neg(b.mul(x, x))]), b.scalar(2.0 / math.sqrt(math.pi), x))


@defelementwise("Sin")
def sin(ctx: RuleContext) -> str:
    return ctx.b.op("Cos", [ctx.x()])


@defelementwise("Cos")
def cos(ctx: RuleContext) -> str:
    return ctx.b.neg(ctx.b.op("Sin", [ctx.x()]))


@register("Max", "Min")
def max_min(ctx: RuleContext, grads: list[str]) -> InputGrads:
    """Gradient to the operand that is the result (ties: the first such operand, as argmax)."""
    b, g, y = ctx.b, grads[0], ctx.y()
    out: InputGrads = []
    taken: str | None = None
    for i in range(len(ctx.inputs)):
        hit = is_extreme(ctx, ctx.x(i), y, ctx.node.op_type == "Max")
        if taken is not None:
            hit = b.op("And", [hit, b.op("Not", [taken])])
        taken = hit if taken is None else b.op("Or", [taken, hit])
        out.append(ctx.unbroadcast(b.where_zero(hit, g), i) if ctx.wants(i) else None)
    return out


@register("Where")
def where(ctx: RuleContext, grads: list[str]) -> InputGrads:
    b, c, g = ctx.b, ctx.x(0), grads[0]
    gx = ctx.unbroadcast(b.where_zero(c, g), 1) if ctx.wants(1) else None
    gy = ctx.unbroadcast(b.where_zero(c, g, otherwise_zero_first=True), 2) if ctx.wants(2) else None
    return [None, gx, gy]
