"""The rule registry: one backward rule per (domain, op_type), one signature, overlayable sets.

A rule is ``rule(ctx, grads) -> list[str | None]``. `grads` holds one cotangent tensor name per
output the rule differentiates: output 0 only, unless the rule was declared with
`differentiable_outputs(n)` (`register(..., outputs=n)`; None means every output, as Split). The
sweep keeps that list free of holes, so rules never test for an absent cotangent:

- a node is differentiated only when one of its outputs has a cotangent: whole dead branches
  stay absent, no zeros are made for them;
- among the outputs a rule takes, one without a cotangent (the other parts of a live Split) gets
  zeros of its shape, made by the sweep;
- an output the rule does not take (BatchNormalization's training statistics, LayerNormalization's
  Mean) that has a cotangent is an UnsupportedOperatorError naming the node.

The rule returns one entry per node input, None where no gradient flows or none was asked for
(`ctx.wants(i)`). Rules emit nodes through `ctx.b` (a GraphBuilder) and may read the primal
inputs/outputs of the node by name, so masks come from values the forward pass computed anyway.

Most rules are one of a few shapes, written with a builder instead of a whole rule (after JAX's
`ad.deflinear2` / `ad.defbilinear`):

- `deflinear`: an op linear in input 0 whose other inputs are shapes, axes, indices (Reshape,
  Transpose, Slice, Pad, Resize, AveragePool, ...): give its transpose, `(ctx, g) -> str`;
- `defelementwise`: a unary elementwise op: give its derivative `(ctx) -> str`, the rule is
  g * f'(x);
- `deflinear_sum`: a broadcasting sum of its inputs with constant weights (Add, Sub, Sum, Mean):
  give the weights `(ctx) -> list[float]`;
- `defbilinear`: an op linear in each of its two operands (Mul, MatMul): give each operand's
  cotangent with the other held fixed.

A RuleSet is an immutable mapping; `RuleSet.overlay({...})` returns a new set where some op
types have other rules (guided backprop, deconvnet, and later LRP epsilon/z+/alpha-beta).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

import onnx
from onnx import helper

from ..errors import UnsupportedOperatorError
from ..graph.builder import GraphBuilder
from .unbroadcast import unbroadcast

Key = tuple[str, str]


@dataclass
class RuleContext:
    """What a rule sees: the primal node, the builder, which inputs need gradients, the path."""

    node: onnx.NodeProto
    b: GraphBuilder
    wanted: tuple[bool, ...]
    path: str = ""
    _attrs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._attrs = {a.name: helper.get_attribute_value(a) for a in self.node.attribute}

    @property
    def inputs(self) -> list[str]:
        return list(self.node.input)

    @property
    def outputs(self) -> list[str]:
        return list(self.node.output)

    @property
    def opset(self) -> int:
        return self.b.opset

    def x(self, i: int = 0) -> str:
        return self.node.input[i] if i < len(self.node.input) else ""

    def y(self, i: int = 0) -> str:
        return self.node.output[i]

    def first(self, g: str) -> InputGrads:
        """Rule result for an op whose only differentiable input is input 0 (the others are
        shapes, axes, bounds, scales: no gradient)."""
        return [g] + [None] * (len(self.inputs) - 1)

    def wants(self, i: int) -> bool:
        return i < len(self.wanted) and self.wanted[i]

    def attr(self, name: str, default: Any = None) -> Any:
        v = self._attrs.get(name, default)
        if isinstance(v, bytes):
            return v.decode()
        return v

    def has_attr(self, name: str) -> bool:
        return name in self._attrs

    def unbroadcast(self, g: str, i: int, out: int = 0) -> str:
        """`g` (shaped like output `out`) reduced to the shape of input `i`."""
        return unbroadcast(self.b, g, self.x(i), self.y(out))

    def const_input(self, i: int, what: str) -> Any:
        """The constant value of input `i`, or an error naming the node when it is computed."""
        v = self.b.constant_value(self.x(i))
        if v is None:
            self.fail(
                f"its {what} (input {i}, {self.x(i)!r}) is computed at run time; onnxlens needs it constant"
            )
        return v

    def fail(self, why: str) -> NoReturn:
        raise UnsupportedOperatorError(
            f"cannot differentiate {self.node.op_type} {self.node.name or self.y()!r}: {why}. "
            f"Path: {self.path}. Re-export the model with a static form of this op, or differentiate "
            "w.r.t. a tensor after it (wrt=...)."
        )

    def rank(self, name: str) -> int:
        r = self.b.rank(name)
        if r is None:
            self.fail(f"the rank of {name!r} is unknown after shape inference (pass input_shape=)")
        return r

    def static_dims(self, name: str, axes: list[int] | None = None) -> list[int]:
        s = self.b.static_shape(name)
        if s is None:
            self.fail(f"the shape of {name!r} is unknown (pass input_shape= to build_vjp)")
        dims = list(s) if axes is None else [s[a] for a in axes]
        if not all(isinstance(d, int) and d > 0 for d in dims):
            self.fail(
                f"it needs static sizes of {name!r} (axes {axes}), shape inference gives {tuple(s)}; "
                "pass input_shape=(N, C, H, W) to build_vjp (Model.gradient does this from the input)"
            )
        return dims  # type: ignore[return-value]


InputGrads = list[str | None]
"""What a rule returns: one gradient per node input, None where none flows or none is wanted."""
Rule = Callable[[RuleContext, list[str]], InputGrads]
Transpose = Callable[[RuleContext, str], str]
"""The cotangent of one input from the output's cotangent `g` (the other inputs held fixed)."""
Derivative = Callable[[RuleContext], str]
Weights = Callable[[RuleContext], Sequence[float]]

_OUTPUTS_ATTR = "_onnxlens_outputs"


def differentiable_outputs(n: int | None) -> Callable[[Rule], Rule]:
    """Decorator: the rule takes cotangents for the node's first `n` outputs (None: all of them).
    Undecorated rules take output 0 only."""

    def deco(fn: Rule) -> Rule:
        setattr(fn, _OUTPUTS_ATTR, n)
        return fn

    return deco


def rule_outputs(rule: Rule, n_outputs: int) -> int:
    """How many leading outputs of a node with `n_outputs` outputs `rule` takes cotangents for."""
    n = getattr(rule, _OUTPUTS_ATTR, 1)
    return n_outputs if n is None else min(n, n_outputs)


class RuleSet(Mapping[Key, Rule]):
    """An immutable table (domain, op_type) -> rule, with overlays for attribution rule sets."""

    def __init__(self, rules: Mapping[Key, Rule], name: str = "custom") -> None:
        self._rules = dict(rules)
        self.name = name

    def __getitem__(self, key: Key) -> Rule:
        return self._rules[key]

    def __iter__(self) -> Iterator[Key]:
        return iter(self._rules)

    def __len__(self) -> int:
        return len(self._rules)

    def lookup(self, domain: str, op_type: str) -> Rule | None:
        domain = "" if domain in ("", "ai.onnx") else domain
        return self._rules.get((domain, op_type))

    def overlay(self, rules: Mapping[Key | str, Rule], name: str | None = None) -> RuleSet:
        """A new set: this one with `rules` replacing or adding entries (str keys mean domain "")."""
        merged = dict(self._rules)
        for k, v in rules.items():
            merged[("", k) if isinstance(k, str) else k] = v
        return RuleSet(merged, name or f"{self.name}+overlay")

    def __repr__(self) -> str:
        return f"RuleSet({self.name!r}, {len(self)} rules)"


_DEFAULT: dict[Key, Rule] = {}


def register(*op_types: str, domain: str = "", outputs: int | None = 1) -> Callable[[Rule], Rule]:
    """Decorator: register a rule in the default table for one or more op types; `outputs` as
    `differentiable_outputs`."""

    def deco(fn: Rule) -> Rule:
        if outputs != 1:
            differentiable_outputs(outputs)(fn)
        for op in op_types:
            _DEFAULT[(domain, op)] = fn
        return fn

    return deco


def deflinear(*op_types: str, domain: str = "") -> Callable[[Transpose], Transpose]:
    """Decorator: register the rule of ops linear in input 0, from their transpose (g -> the
    input's cotangent). The other inputs (shapes, axes, indices, pads, scales) get no gradient."""

    def deco(transpose: Transpose) -> Transpose:
        def rule(ctx: RuleContext, grads: list[str]) -> InputGrads:
            return ctx.first(transpose(ctx, grads[0]))

        register(*op_types, domain=domain)(rule)
        return transpose

    return deco


def defelementwise(*op_types: str, domain: str = "") -> Callable[[Derivative], Derivative]:
    """Decorator: register the rule g * f'(x) of unary elementwise ops from their derivative
    f'(x), a tensor shaped like x built from the primal input and output."""

    def deco(derivative: Derivative) -> Derivative:
        def rule(ctx: RuleContext, grads: list[str]) -> InputGrads:
            return [ctx.b.mul(grads[0], derivative(ctx))]

        register(*op_types, domain=domain)(rule)
        return derivative

    return deco


def deflinear_sum(*op_types: str, domain: str = "") -> Callable[[Weights], Weights]:
    """Decorator: register the rule of y = sum_i w_i x_i with broadcasting (Add, Sub, Sum, Mean)
    from the constant weights w_i: input i gets w_i times g reduced to its shape. The weight is
    applied after the reduction, on the smaller tensor; weights of 1 and -1 cost no Mul."""

    def deco(weights: Weights) -> Weights:
        def rule(ctx: RuleContext, grads: list[str]) -> InputGrads:
            b, g = ctx.b, grads[0]
            out: InputGrads = []
            for i, w in enumerate(weights(ctx)):
                if not ctx.wants(i):
                    out.append(None)
                    continue
                gi = ctx.unbroadcast(g, i)
                if w == -1.0:
                    gi = b.neg(gi)
                elif w != 1.0:
                    gi = b.mul(gi, b.scalar(w, ctx.x(i)))
                out.append(gi)
            return out

        register(*op_types, domain=domain)(rule)
        return weights

    return deco


def defbilinear(*op_types: str, lhs: Transpose, rhs: Transpose, domain: str = "") -> Rule:
    """Register the rule of ops linear in each of their two operands (Mul, MatMul): `lhs(ctx, g)`
    is input 0's cotangent with input 1 held fixed, `rhs(ctx, g)` input 1's; each is built only
    when asked for (a constant operand, the usual weight, costs nothing). Returns the rule."""

    def rule(ctx: RuleContext, grads: list[str]) -> InputGrads:
        g = grads[0]
        return [lhs(ctx, g) if ctx.wants(0) else None, rhs(ctx, g) if ctx.wants(1) else None]

    return register(*op_types, domain=domain)(rule)


_SETS: dict[str, RuleSet] = {}


def default_rules() -> RuleSet:
    from . import rules as _rules  # noqa: F401  (registers every family)

    return RuleSet(_DEFAULT, "default")


def rule_set(rules: str | RuleSet | Mapping[Key | str, Rule] | None) -> RuleSet:
    """Resolve `rules` ("default", "guided", "deconvnet", "redirected" (feature visualisation's
    redirected ReLU gradients), a RuleSet or an overlay dict)."""
    if isinstance(rules, RuleSet):
        return rules
    if rules is None or isinstance(rules, str):
        name = rules or "default"
        if name not in _SETS:
            from .rules.activations import deconvnet_overlay, guided_overlay
            from .rules.redirected import redirected_overlay

            base = default_rules()
            _SETS["default"] = base
            _SETS["guided"] = base.overlay(guided_overlay(), "guided")
            _SETS["deconvnet"] = base.overlay(deconvnet_overlay(), "deconvnet")
            _SETS["redirected"] = base.overlay(redirected_overlay(), "redirected")
        if name not in _SETS:
            from ..errors import ConfigurationError

            raise ConfigurationError(
                f"unknown rule set {name!r}; use one of {sorted(_SETS)} or pass a RuleSet "
                "(e.g. onnxlens.autodiff.default_rules().overlay({'Relu': my_rule}))."
            )
        return _SETS[name]
    return default_rules().overlay(rules)
