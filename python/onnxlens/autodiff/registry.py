"""The rule registry: one backward rule per (domain, op_type), one signature, overlayable sets.

A rule is ``rule(ctx, grads) -> list[str | None]``: `grads` holds one gradient tensor name (or
None when absent) per node output; the rule returns one entry per node input, None where no
gradient flows or none was asked for (`ctx.wants(i)`). Rules emit nodes through `ctx.b`
(a GraphBuilder) and may read the primal inputs/outputs of the node by name, so masks come from
values the forward pass computed anyway.

A RuleSet is an immutable mapping; `RuleSet.overlay({...})` returns a new set where some op
types have other rules (guided backprop, deconvnet, and later LRP epsilon/z+/alpha-beta).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
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

    def first(self, g: str | None) -> list[str | None]:
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


Rule = Callable[[RuleContext, list[str | None]], list[str | None]]


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


def register(*op_types: str, domain: str = "") -> Callable[[Rule], Rule]:
    """Decorator: register a rule in the default table for one or more op types."""

    def deco(fn: Rule) -> Rule:
        for op in op_types:
            _DEFAULT[(domain, op)] = fn
        return fn

    return deco


_SETS: dict[str, RuleSet] = {}


def default_rules() -> RuleSet:
    from . import rules as _rules  # noqa: F401  (registers every family)

    return RuleSet(_DEFAULT, "default")


def rule_set(rules: str | RuleSet | Mapping[Key | str, Rule] | None) -> RuleSet:
    """Resolve `rules` ("default", "guided", "deconvnet", a RuleSet or an overlay dict)."""
    if isinstance(rules, RuleSet):
        return rules
    if rules is None or isinstance(rules, str):
        name = rules or "default"
        if name not in _SETS:
            from .rules.activations import deconvnet_overlay, guided_overlay

            base = default_rules()
            _SETS["default"] = base
            _SETS["guided"] = base.overlay(guided_overlay(), "guided")
            _SETS["deconvnet"] = base.overlay(deconvnet_overlay(), "deconvnet")
        if name not in _SETS:
            from ..errors import ConfigurationError

            raise ConfigurationError(
                f"unknown rule set {name!r}; use one of {sorted(_SETS)} or pass a RuleSet "
                "(e.g. onnxlens.autodiff.default_rules().overlay({'Relu': my_rule}))."
            )
        return _SETS[name]
    return default_rules().overlay(rules)
