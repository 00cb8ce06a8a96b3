"""build_vjp: an ONNX model in, the ONNX model of its vector-Jacobian product out."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper

from ..errors import ConfigurationError
from ..graph import NameGenerator, weightless
from ..graph.builder import GRAD_PREFIX, GraphBuilder
from ..graph.layers import Shape, list_layers, resolve_tensor, value_dims
from ..graph.shapes import infer_shapes, pin_input_shape
from ..runtime.probe import probe_dims, probe_missing_shapes
from .registry import Key, Rule, RuleSet, rule_set
from .sweep import Sweep, seed_value_info

log = logging.getLogger("onnxlens")

Rules = str | RuleSet | Mapping[Key | str, Rule] | None


@dataclass
class VJPGraph:
    """A vector-Jacobian-product graph.

    Inputs: the model inputs plus one cotangent seed per seeded tensor (`seed_inputs`: tensor ->
    input name; same shape and dtype as the tensor, batch dim dynamic). Outputs: the model outputs
    (`primal_outputs`), the kept activations (`keep`, under their own tensor names) and one
    gradient per wrt tensor (`grad_outputs`: tensor -> output name).
    """

    proto: onnx.ModelProto
    seed_inputs: dict[str, str]
    grad_outputs: dict[str, str]
    primal_outputs: list[str]
    keep: list[str] = field(default_factory=list)

    def seed_dtype(self, tensor: str) -> np.dtype:
        """The numpy dtype the cotangent for `tensor` is fed as."""
        name = self.seed_inputs[tensor]
        vi = next(v for v in self.proto.graph.input if v.name == name)
        return np.dtype(helper.tensor_dtype_to_np_dtype(vi.type.tensor_type.elem_type))


def build_vjp(
    model_proto: onnx.ModelProto,
    seeds: Sequence[str],
    wrt: Sequence[str],
    rules: Rules = "default",
    keep: Sequence[str] = (),
    input_shape: Sequence[int | None] | None = None,
    check: bool = True,
) -> VJPGraph:
    """The VJP graph of `model_proto` (never mutated): gradients of sum_i <seed_i, seeds[i]> w.r.t.
    each tensor in `wrt`, plus the primal outputs and the `keep` activations, in one graph.

    `seeds` and `wrt` are tensor names, node names or "input". `rules` is "default", "guided",
    "deconvnet", a RuleSet, or a dict overlay {op_type: rule} on the default rules. `input_shape`
    pins the non-batch dims of the first input (needed when rules such as Conv's need static sizes
    and the model has dynamic height/width). A wrt tensor that no seed depends on gets zeros.
    """
    if not seeds:
        raise ConfigurationError(
            "no seeds given: name at least one output or tensor to differentiate."
        )
    if not wrt:
        raise ConfigurationError(
            "no wrt tensors given: name the input or the layers to take gradients for."
        )
    model = onnx.ModelProto()
    model.CopyFrom(model_proto)
    if input_shape is not None:
        model = pin_input_shape(model, input_shape)
    if input_shape is not None or not model.graph.value_info:
        model = infer_shapes(model)
    model = probe_missing_shapes(model)
    layers = list_layers(model)
    inits = {t.name for t in model.graph.initializer}
    seed_t = list(dict.fromkeys(resolve_tensor(model, s, layers) for s in seeds))
    wrt_t = list(dict.fromkeys(resolve_tensor(model, w, layers) for w in wrt))
    for w in wrt_t:
        if w in inits:
            raise ConfigurationError(
                f"{w!r} is a weight (initializer); gradients w.r.t. weights are not supported yet."
            )
    ruleset = rule_set(rules)
    names = NameGenerator(model, prefix=GRAD_PREFIX)
    b = GraphBuilder(model, names)
    seed_inputs = {t: names(f"seed/{t}") for t in seed_t}
    for t, s in seed_inputs.items():
        b.elem_types[s] = b.elem_type(t)
    b.probe = _lazy_probe(model)
    sweep = Sweep(model, b, ruleset)
    grads = sweep.run(seed_inputs, wrt_t)
    grad_outputs: dict[str, str] = {}
    g = model.graph
    for w, gname in grads.items():
        if gname is None:
            log.warning("onnxlens: no seed depends on %r; its gradient is zero", w)
            gname = b.zeros_like(w)
        out = names(f"grad/{w}")
        b.nodes.append(helper.make_node("Identity", [gname], [out], name=names("grad_out")))
        grad_outputs[w] = out
    g.node.extend(b.nodes)
    g.initializer.extend(b.initializers)
    if model.ir_version < 4:  # IR 3: every initializer must also be a graph input
        g.input.extend(
            helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in b.initializers
        )
    for t, s in seed_inputs.items():
        g.input.append(seed_value_info(b, model, t, s))
    primal = [o.name for o in g.output]
    keep_t = [
        k for k in dict.fromkeys(resolve_tensor(model, k, layers) for k in keep) if k not in primal
    ]
    for name in keep_t + list(grad_outputs.values()):
        src = name if name in keep_t else next(w for w, o in grad_outputs.items() if o == name)
        rank = b.rank(src)
        if rank is None:
            g.output.append(helper.make_empty_tensor_value_info(name))
        else:  # rank only: ORT checks outputs against declared dims, and inference may pin a batch
            g.output.append(helper.make_tensor_value_info(name, b.elem_type(src), [None] * rank))
    if check:
        try:
            onnx.checker.check_model(weightless(model))
        except onnx.checker.ValidationError as exc:  # a bug in a rule, not the user's fault
            raise RuntimeError(f"onnxlens built an invalid VJP graph: {exc}") from exc
    return VJPGraph(model, seed_inputs, grad_outputs, primal, keep_t)


# Nodes whose rules may ask for probed shapes (the un-broadcast of their operands).
_PROBED = {"Add", "Sub", "Mul", "Div", "Pow", "Where", "Max", "Min", "Sum", "Mean", "PRelu"}


def _lazy_probe(model: onnx.ModelProto) -> Callable[[str], Shape]:
    """`GraphBuilder.probe` for `model`: on the first question, one probe (two ORT runs) of the
    operands and results of every broadcasting node; later questions are answered from it."""
    found: dict[str, tuple[int | str, ...]] | None = None

    inits = {t.name for t in model.graph.initializer}
    inputs = {v.name: v for v in model.graph.input if v.name not in inits}

    def probe(name: str) -> Shape:
        nonlocal found
        if found is None:
            names = [
                t
                for n in model.graph.node
                if n.op_type in _PROBED
                for t in [*n.input, *n.output]
                if t and t not in inits and t not in inputs
            ]
            found = probe_dims(model, list(dict.fromkeys(names)))
            if found:  # the inputs in the probe's labels: a dynamic batch is "batch"
                for v in inputs.values():
                    dims = value_dims(v)
                    if dims and all(isinstance(d, int) for d in dims[1:]):
                        d0: int | str = dims[0] if isinstance(dims[0], int) else "batch"
                        found[v.name] = (d0, *(int(d) for d in dims[1:]))  # type: ignore[arg-type]
        return found.get(name)

    return probe
