"""Reverse-mode differentiation of ONNX graphs: VJP graphs run by ONNX Runtime.

`build_vjp(model, seeds, wrt, rules)` turns a model into a graph whose extra inputs are cotangent
seeds and whose extra outputs are gradients (plus chosen activations), so one ORT run returns
activations and their gradients. `VJPFunction` is such a graph compiled once (session, feed names,
dtypes) and called many times: what an optimisation loop needs. Rules live in one registry keyed
by (domain, op_type); rule sets ("default", "guided", "deconvnet", or
`default_rules().overlay({...})`) replace rules per op type. The graph keeps a dynamic batch;
`tune_for_cpu(graph, batch)` is the copy a CPU session runs (batch pinned, NCHWc entry points),
which `VJPFunction.compile(..., batch=)` and `Model.vjp_function` use automatically.
"""

from __future__ import annotations

from .build import Rules, VJPGraph, build_vjp
from .compiled import VJPFunction, VJPResult
from .cpu_graph import tune_for_cpu
from .registry import Rule, RuleContext, RuleSet, default_rules, register, rule_set
from .unbroadcast import unbroadcast

__all__ = [
    "Rule",
    "RuleContext",
    "RuleSet",
    "Rules",
    "VJPFunction",
    "VJPGraph",
    "VJPResult",
    "build_vjp",
    "default_rules",
    "register",
    "rule_set",
    "tune_for_cpu",
    "unbroadcast",
]
