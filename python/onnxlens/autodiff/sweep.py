"""The reverse sweep: which nodes to differentiate, in which order, and how gradients add up.

1. Forward reachability from the `wrt` tensors through floating-point values (integer and bool
   tensors - Shape, ArgMax, comparisons - carry no gradient, so shape-only branches need no rule).
2. Backward reachability from the seeds. A node is differentiated only when one of its outputs
   carries a gradient and one of its inputs is forward-reachable: the sweep stops where nothing
   asked for lies further back.
3. Nodes are visited in reverse topological order; a tensor's contributions are summed (Add for
   two, Sum for more) only when its producer is reached or it is a requested gradient, so absent
   gradients stay absent and no zero tensors are made for dead branches.
4. A rule gets a cotangent for every output it takes (`registry.rule_outputs`): the only zeros
   the sweep makes are for the other outputs of a node already differentiated (the unused parts
   of a Split), and a cotangent on an output the rule does not take is an error naming the node.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import onnx
from onnx import helper

from ..errors import UnsupportedOperatorError
from ..graph.builder import FLOAT_TYPES, GraphBuilder
from ..graph.layers import subgraph_inputs
from ..graph.walk import ancestors
from .registry import Rule, RuleContext, RuleSet, rule_outputs

log = logging.getLogger("onnxlens")


def _label(node: onnx.NodeProto) -> str:
    return (
        f"{node.op_type} {node.name or node.output[0]!r}"
        if node.name
        else f"{node.op_type} {node.output[0]!r}"
    )


class Sweep:
    """One reverse sweep over `model` (a shape-inferred copy that the sweep may extend)."""

    def __init__(self, model: onnx.ModelProto, b: GraphBuilder, rules: RuleSet) -> None:
        self.model = model
        self.b = b
        self.rules = rules
        self.contribs: dict[str, list[str]] = {}
        self.parent: dict[str, tuple[onnx.NodeProto | None, str | None]] = {}

    def _is_float(self, name: str) -> bool:
        et = self.b.elem_types.get(name)
        return et is None or et in FLOAT_TYPES

    def path(self, tensor: str, limit: int = 9) -> str:
        hops: list[str] = []
        t: str | None = tensor
        while t is not None and t in self.parent:
            node, prev = self.parent[t]
            hops.append(t if node is None else _label(node))
            t = prev
        hops.reverse()
        if len(hops) > limit:
            hops = [*hops[:3], f"... {len(hops) - 7} nodes ...", *hops[-4:]]
        return " -> ".join(hops)

    def forward_reach(self, wrt: Sequence[str]) -> set[str]:
        reached = set(wrt)
        for w in wrt:
            self.parent[w] = (None, None)
        for node in self.model.graph.node:
            ins = [i for i in list(node.input) + subgraph_inputs(node) if i in reached]
            if not ins:
                continue
            for o in node.output:
                if o and self._is_float(o) and o not in reached:
                    reached.add(o)
                    self.parent[o] = (node, ins[0])
        return reached

    def backward_reach(self, seeds: Sequence[str]) -> set[str]:
        return ancestors(self.model.graph, seeds)[0]

    def add(self, tensor: str, grad: str) -> None:
        self.contribs.setdefault(tensor, []).append(grad)

    def cotangents(self, ctx: RuleContext, rule: Rule) -> list[str]:
        """The cotangents `rule` takes for the outputs of ctx.node, which has at least one:
        zeros for a taken output without one, an error for an untaken output with one."""
        outs = ctx.outputs
        n = rule_outputs(rule, len(outs))
        for j, o in enumerate(outs[n:], n):
            if o in self.contribs:
                taken = "output 0" if n == 1 else f"outputs 0-{n - 1}"
                ctx.fail(
                    f"its rule differentiates {taken} only, and output {j} ({o!r}) receives a "
                    f"gradient; seed or differentiate tensors computed from {outs[:n]} only"
                )
        return [self.grad(o) or self.b.zeros_like(o) for o in outs[:n]]

    def grad(self, tensor: str) -> str | None:
        parts = self.contribs.get(tensor)
        if not parts:
            return None
        if len(parts) > 1:
            if len(parts) == 2:
                total = self.b.op("Add", parts, hint="acc")
            else:
                total = self.b.op("Sum", parts, hint="acc")
            self.contribs[tensor] = [total]
        return self.contribs[tensor][0]

    def run(self, seeds: dict[str, str], wrt: Sequence[str]) -> dict[str, str | None]:
        """Differentiate; `seeds` maps seeded tensors to seed input names. Returns wrt -> grad."""
        fwd = self.forward_reach(wrt)
        bwd = self.backward_reach(list(seeds))
        for t, s in seeds.items():
            self.add(t, s)
        wrt_set = set(wrt)
        for node in reversed(list(self.model.graph.node)):
            outs = list(node.output)
            if not any(o in self.contribs for o in outs if o):
                continue
            wanted = tuple(
                bool(i) and i in fwd and i in bwd and self._is_float(i) for i in node.input
            )
            extra = [i for i in subgraph_inputs(node) if i in fwd]
            if not any(wanted) and not extra:
                continue
            rule = self.rules.lookup(node.domain, node.op_type)
            if rule is None or extra:
                where = (
                    self.path(next(o for o in outs if o in fwd))
                    if any(o in fwd for o in outs)
                    else _label(node)
                )
                raise UnsupportedOperatorError(
                    f"no gradient rule for operator {node.op_type!r}"
                    + (f" (domain {node.domain!r})" if node.domain else "")
                    + f" at node {node.name or outs[0]!r}, which the differentiated value reaches: {where}. "
                    "Differentiate w.r.t. a tensor after it (wrt=...), or register a rule with "
                    "onnxlens.autodiff.default_rules().overlay({...})."
                )
            ctx = RuleContext(
                node, self.b, wanted, path=self.path(outs[0]) if outs[0] in fwd else _label(node)
            )
            grads = self.cotangents(ctx, rule)
            result = rule(ctx, grads)
            for i, g in enumerate(result):
                if g is not None and i < len(wanted) and wanted[i]:
                    self.add(node.input[i], g)
            # A requested intermediate's gradient is final here; sum it now so later (earlier
            # in the graph) uses see one tensor.
            for i in node.input:
                if i in wrt_set:
                    self.grad(i)
        return {w: self.grad(w) for w in wrt}


def seed_value_info(
    b: GraphBuilder, model: onnx.ModelProto, tensor: str, name: str
) -> onnx.ValueInfoProto:
    """A graph input like `tensor` with a dynamic batch dim (dim 0) when the model input has one."""
    shape = b.static_shape(tensor)
    et = b.elem_type(tensor)
    if shape is None:  # the checker will refuse it; build_vjp(check=False) still runs in ORT
        return helper.make_tensor_value_info(name, et, None)
    dims: list[int | str | None] = list(shape)
    if dims:
        dims[0] = dims[0] if isinstance(dims[0], int) and _input_batch_static(model) else "batch"
    return helper.make_tensor_value_info(name, et, dims)


def _input_batch_static(model: onnx.ModelProto) -> bool:
    inits = {t.name for t in model.graph.initializer}
    for v in model.graph.input:
        if v.name in inits:
            continue
        d = v.type.tensor_type.shape.dim
        return bool(d) and d[0].HasField("dim_value") and d[0].dim_value > 0
    return False
