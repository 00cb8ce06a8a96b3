"""Reverse-mode differentiation of ONNX graphs: VJP graphs run by ONNX Runtime.

`build_vjp(model, seeds, wrt, rules)` turns a model into a graph whose extra inputs are cotangent
seeds and whose extra outputs are gradients (plus chosen activations), so one ORT run returns
activations and their gradients. Rules live in one registry keyed by (domain, op_type); rule sets
("default", "guided", "deconvnet", or `default_rules().overlay({...})`) replace rules per op type.
"""

from __future__ import annotations

from .api import VJPGraph, build_vjp
from .builder import GraphBuilder
from .registry import Rule, RuleContext, RuleSet, default_rules, register, rule_set
from .unbroadcast import unbroadcast

__all__ = [
    "GraphBuilder",
    "Rule",
    "RuleContext",
    "RuleSet",
    "VJPGraph",
    "build_vjp",
    "default_rules",
    "register",
    "rule_set",
    "unbroadcast",
]
