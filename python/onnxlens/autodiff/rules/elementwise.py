"""Arithmetic with broadcasting: Add, Sub, Mul, Div, Neg, Pow, Sqrt, Exp, Log, Reciprocal, ..."""

from __future__ import annotations

import math

from ..registry import RuleContext, register

G = list[str | None]


@register("Add", "Sub")
def add_sub(ctx: RuleContext, grads: G) -> G:
    g = grads[0]
    assert g is not None
    b = ctx.b
    ga = ctx.unbroadcast(g, 0) if ctx.wants(0) else None
    gb = None
    if ctx.wants(1):
        gb = ctx.unbroadcast(g, 1)
        if ctx.node.op_type == "Sub":
            gb = b.neg(gb)
    return [ga, gb]


@register("Sum")
def sum_(ctx: RuleContext, grads: G) -> G:
    g = grads[0]
    assert g is not None
    return [ctx.unbroadcast(g, i) if ctx.wants(i) else None for i in range(len(ctx.inputs))]


@register("Mean")
def mean(ctx: RuleContext, grads: G) -> G:
    g = ctx.b.mul(grads[0], ctx.b.scalar(1.0 / len(ctx.inputs), ctx.y()))  # type: ignore[arg-type]
    return [ctx.unbroadcast(g, i) if ctx.wants(i) else None for i in range(len(ctx.inputs))]


@register("Mul")
def mul(ctx: RuleContext, grads: G) -> G:
    g = grads[0]
    assert g is not None
    b = ctx.b
    a_, b_ = ctx.x(0), ctx.x(1)
    ga = ctx.unbroadcast(b.mul(g, b_), 0) if ctx.wants(0) else None
    gb = ctx.unbroadcast(b.mul(g, a_), 1) if ctx.wants(1) else None
    return [ga, gb]


@register("Div")
def div(ctx: RuleContext, grads: G) -> G:
    g = grads[0]
    assert g is not None
    b = ctx.b
    ga = ctx.unbroadcast(b.op("Div", [g, ctx.x(1)]), 0) if ctx.wants(0) else None
    gb = None
    if ctx.wants(1):  # d(a/b)/db = -(a/b)/b, from the primal output
        gb = ctx.unbroadcast(b.neg(b.op("Div", [b.mul(g, ctx.y()), ctx.x(1)])), 1)
    return [ga, gb]


@register("Neg")
def neg(ctx: RuleContext, grads: G) -> G:
    return [ctx.b.neg(grads[0])]  # type: ignore[arg-type]


@register("Identity", "Dropout")
def identity(ctx: RuleContext, grads: G) -> G:
    if ctx.node.op_type == "Dropout" and len(ctx.inputs) > 2 and ctx.x(2):
        mode = ctx.b.constant_value(ctx.x(2))
        if mode is None or bool(mode):
            ctx.fail("training_mode is not constant false; export the model in eval mode")
    return ctx.first(grads[0])


@register("Cast")
def cast(ctx: RuleContext, grads: G) -> G:
    return [ctx.b.op("Cast", [grads[0]], to=ctx.b.elem_type(ctx.x()))]  # type: ignore[list-item]


@register("Pow")
def pow_(ctx: RuleContext, grads: G) -> G:
    g = grads[0]
    assert g is not None
    b = ctx.b
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
def sqrt(ctx: RuleContext, grads: G) -> G:
    b = ctx.b
    return [b.op("Div", [b.mul(grads[0], b.scalar(0.5, ctx.y())), ctx.y()])]  # type: ignore[list-item]


@register("Exp")
def exp(ctx: RuleContext, grads: G) -> G:
    return [ctx.b.mul(grads[0], ctx.y())]  # type: ignore[arg-type]


@register("Log")
def log(ctx: RuleContext, grads: G) -> G:
    return [ctx.b.op("Div", [grads[0], ctx.x()])]  # type: ignore[list-item]


@register("Reciprocal")
def reciprocal(ctx: RuleContext, grads: G) -> G:
    b, y = ctx.b, ctx.y()
    return [b.neg(b.mul(grads[0], b.mul(y, y)))]  # type: ignore[arg-type]


@register("Abs")
def abs_(ctx: RuleContext, grads: G) -> G:
    b = ctx.b
    return [b.mul(grads[0], b.op("Sign", [ctx.x()]))]  # type: ignore[arg-type]


@register("Erf")
def erf(ctx: RuleContext, grads: G) -> G:
    b, x = ctx.b, ctx.x()
    e = b.op("Exp", [b.neg(b.mul(x, x))])
    return [b.mul(grads[0], b.mul(e, b.scalar(2.0 / math.sqrt(math.pi), x)))]  # type: ignore[arg-type]


@register("Sin")
def sin(ctx: RuleContext, grads: G) -> G:
    return [ctx.b.mul(grads[0], ctx.b.op("Cos", [ctx.x()]))]  # type: ignore[arg-type]


@register("Cos")
def cos(ctx: RuleContext, grads: G) -> G:
    b = ctx.b
    return [b.neg(b.mul(grads[0], b.op("Sin", [ctx.x()])))]  # type: ignore[arg-type]


@register("Max", "Min")
def max_min(ctx: RuleContext, grads: G) -> G:
    """Gradient to the operand that is the result (ties: the first such operand, as argmax)."""
    g = grads[0]
    assert g is not None
    b, y = ctx.b, ctx.y()
    out: G = []
    taken: str | None = None
    for i in range(len(ctx.inputs)):
        hit = b.op("Equal", [ctx.x(i), y])
        if taken is not None:
            hit = b.op("And", [hit, b.op("Not", [taken])])
        taken = hit if taken is None else b.op("Or", [taken, hit])
        out.append(ctx.unbroadcast(b.where_zero(hit, g), i) if ctx.wants(i) else None)
    return out


@register("Where")
def where(ctx: RuleContext, grads: G) -> G:
    g = grads[0]
    assert g is not None
    b, c = ctx.b, ctx.x(0)
    gx = ctx.unbroadcast(b.where_zero(c, g), 1) if ctx.wants(1) else None
    gy = ctx.unbroadcast(b.where_zero(c, g, otherwise_zero_first=True), 2) if ctx.wants(2) else None
    return [None, gx, gy]


@register("Expand")
def expand(ctx: RuleContext, grads: G) -> G:
    return [ctx.unbroadcast(grads[0], 0), None]  # type: ignore[arg-type]
