"""Redirected ReLU gradients (lucid's `redirected_relu_grad`), a rule set for feature
visualisation: `rule_set("redirected")`.

At the start of an optimisation a channel can be dead on the whole image: every ReLU in front of
it is off, the true gradient is exactly zero and gradient ascent never moves. The redirected
rule passes, for each batch row whose true ReLU gradient is all zero, the gradient components
that would push a unit back into the ReLU's linear part: below 0 only increases, and for ReLU6
above 6 only decreases. Rows with any true gradient keep it unchanged, so the rule changes
nothing once the optimisation has started to move; visualize() uses it for its first steps.

Cotangents here are d objective / d y for an objective being *maximised*; lucid writes the same
rule for a loss being minimised (the signs of its tests are flipped).
"""

from __future__ import annotations

from ..registry import InputGrads, Key, Rule, RuleContext
from .activations import _clip_bounds, _is_relu6, clip


def _redirect(ctx: RuleContext, g: str, inside: str, below: str, above: str | None) -> str:
    """true + (1 - any_true_per_row) * (relu(g) below + min(g, 0) above)."""
    b = ctx.b
    true = b.mul(g, inside)
    extra = b.mul(b.op("Relu", [g]), below)
    if above is not None:
        extra = b.op("Sub", [extra, b.mul(b.op("Relu", [b.neg(g)]), above)])
    rank = ctx.rank(ctx.y())  # the cotangent has the primal output's shape
    if rank < 2:  # no batch axis to select by: the whole tensor is one row
        energy = b.reduce_sum(b.mul(true, true), list(range(rank)), keepdims=True)
    else:
        energy = b.reduce_sum(b.mul(true, true), list(range(1, rank)), keepdims=True)
    dead = b.op("Cast", [b.op("Not", [b.op("Greater", [energy, b.scalar(0.0, energy)])])],
                to=b.elem_type(g))  # fmt: skip
    return b.op("Add", [true, b.mul(dead, extra)])


def redirected_relu(ctx: RuleContext, grads: list[str]) -> InputGrads:
    b, y = ctx.b, ctx.y()
    inside = b.step(y, 0.0, above=True)  # y > 0 iff x > 0
    below = b.step(y, 0.0, above=False, inclusive=True)  # y == 0 iff x <= 0
    return [_redirect(ctx, grads[0], inside, below, None)]


def redirected_clip(ctx: RuleContext, grads: list[str]) -> InputGrads:
    """ReLU6 (a Clip with constant bounds, the lower one 0): lucid's redirected_relu6_grad."""
    bounds = _clip_bounds(ctx)
    if not _is_relu6(ctx) or not all(isinstance(v, float) for v, _ in bounds):
        return clip(ctx, grads)
    b, y = ctx.b, ctx.y()
    inside = below = above = None
    for bound, low in bounds:
        assert isinstance(bound, float)
        m = b.step(y, bound, above=low)
        inside = m if inside is None else b.mul(inside, m)
        out = b.step(y, bound, above=not low, inclusive=True)
        below, above = (out, above) if low else (below, out)
    assert inside is not None and below is not None
    return ctx.first(_redirect(ctx, grads[0], inside, below, above))


def redirected_overlay() -> dict[Key | str, Rule]:
    return {"Relu": redirected_relu, "Clip": redirected_clip}
