"""Entry points: build_vjp (graph to graph) and the run-time helpers Model's methods delegate to."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
from onnx import helper

from ..errors import ConfigurationError, LayerNotFoundError, ShapeError
from ..graph import NameGenerator, weightless
from ..graph.layers import list_layers, resolve_tensor
from .builder import GRAD_PREFIX, GraphBuilder
from .cpu_graph import tune_for_cpu
from .registry import Key, Rule, RuleSet, rule_set
from .sweep import Sweep, seed_value_info

if TYPE_CHECKING:
    from ..model import Inputs, Model

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


def _pin_input_shape(model: onnx.ModelProto, input_shape: Sequence[int | None]) -> onnx.ModelProto:
    """Copy of `model` whose first runtime input has static dims (dim 0 stays as it is)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    inits = {t.name for t in out.graph.initializer}
    vi = next(v for v in out.graph.input if v.name not in inits)
    dims = vi.type.tensor_type.shape.dim
    if len(dims) != len(input_shape):
        raise ShapeError(
            f"input_shape {tuple(input_shape)} has rank {len(input_shape)}, but input {vi.name!r} has rank {len(dims)}."
        )
    for axis, (d, want) in enumerate(zip(dims, input_shape, strict=True)):
        if axis == 0 or want is None:
            continue
        d.Clear()
        d.dim_value = int(want)
    del out.graph.value_info[:]
    for o in out.graph.output:  # stale symbolic dims would shadow what inference now knows
        for d in o.type.tensor_type.shape.dim:
            if not d.HasField("dim_value"):
                d.Clear()
    return out


def _probe_missing_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Fill in shapes that static inference could not (Paddle exports compute Reshape targets
    from Shape/Slice/Cast/Concat at run time) by running the model once at batch 1 and once at
    batch 2 on zeros: dims that follow the batch become symbolic. Needs static non-batch input dims
    (pass input_shape=); otherwise the rules that need sizes say what is missing."""
    infos = {v.name for v in model.graph.value_info if v.type.tensor_type.HasField("shape")}
    infos |= {v.name for v in model.graph.input} | {v.name for v in model.graph.output}
    inits = {t.name for t in model.graph.initializer}
    missing = [
        o
        for n in model.graph.node
        for o in n.output
        if o and o not in infos and o not in inits and n.op_type != "Constant"
    ]
    if not missing:
        return model
    runtime = [v for v in model.graph.input if v.name not in inits]
    feeds_shapes = []
    for v in runtime:
        dims = v.type.tensor_type.shape.dim
        rest = [
            d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
            for d in list(dims)[1:]
        ]
        if None in rest:
            return model
        feeds_shapes.append((v.name, v.type.tensor_type.elem_type, rest))
    import onnxruntime as ort

    from ..graph import add_outputs

    probe = add_outputs(model, missing)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        sess = ort.InferenceSession(
            probe.SerializeToString(), opts, providers=["CPUExecutionProvider"]
        )
        runs = []
        for batch in (1, 2):
            feeds = {
                name: np.zeros([batch, *rest], dtype=helper.tensor_dtype_to_np_dtype(et))
                for name, et, rest in feeds_shapes
            }
            runs.append(sess.run(missing, feeds))
    except Exception as exc:
        log.debug("onnxlens: shape probe failed: %s", exc)
        return model
    for name, a, b in zip(missing, runs[0], runs[1], strict=True):
        a, b = np.asarray(a), np.asarray(b)
        if a.ndim != b.ndim:
            continue
        dims: list[int | str] = [
            da if da == db else "batch" for da, db in zip(a.shape, b.shape, strict=True)
        ]
        et = helper.np_dtype_to_tensor_dtype(a.dtype)
        model.graph.value_info.append(helper.make_tensor_value_info(name, et, dims))
    return model


def _infer(model: onnx.ModelProto) -> onnx.ModelProto:
    """Shape inference run on the weightless view (fast for big models), results copied back."""
    try:
        light = onnx.shape_inference.infer_shapes(
            weightless(model), check_type=False, strict_mode=False, data_prop=True
        )
    except Exception:  # best effort: rules that need sizes say so
        return model
    del model.graph.value_info[:]
    model.graph.value_info.extend(light.graph.value_info)
    for o, lo in zip(model.graph.output, light.graph.output, strict=True):
        o.CopyFrom(lo)
    return model


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
        model = _pin_input_shape(model, input_shape)
    if input_shape is not None or not model.graph.value_info:
        model = _infer(model)
    model = _probe_missing_shapes(model)
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


# -- Model-facing helpers ---------------------------------------------------------------------


def _pinned_shape(model: Model, x: np.ndarray) -> tuple[int, ...] | None:
    shape = model.input.shape
    if shape is None or all(isinstance(d, int) and d > 0 for d in shape[1:]):
        return None
    return (x.shape[0], *x.shape[1:])


def _graph(
    model: Model,
    seeds: Sequence[str],
    wrt: Sequence[str],
    rules: Rules,
    keep: Sequence[str],
    x: np.ndarray,
    batch: int,
):
    """(session, VJPGraph) for `batch` samples per run. The graph is cached per variant; on the
    CPU the session is per variant and batch size, built from `cpu_graph.tune_for_cpu`
    (`Model.run_batched` pads a short last batch to that size)."""
    pin = _pinned_shape(model, x)
    # A rule set is keyed by its contents (the rule functions themselves), never by id(): a
    # collected set's address reused by a new one would hand back a graph built with old rules.
    rules_key: Any = (
        rules if rules is None or isinstance(rules, str) else frozenset(dict(rules).items())
    )
    key = ("vjp", tuple(seeds), tuple(wrt), rules_key, tuple(keep), pin[1:] if pin else None)
    holder: dict[str, VJPGraph] = {}
    cache = model.__dict__.setdefault("_vjp_graphs", {})
    tune = model.input.batch is None and model.on_cpu

    def build() -> onnx.ModelProto:
        vg = cache.get(key) or build_vjp(
            model.proto, seeds, wrt, rules or "default", keep, input_shape=pin
        )
        holder["g"] = vg
        cache[key] = vg
        return tune_for_cpu(vg.proto, batch) if tune else vg.proto

    sess = model.session((*key, batch) if tune else key, build)
    vg = holder.get("g") or cache.get(key)
    if vg is None:  # session cached but graph metadata evicted: rebuild the metadata only
        vg = build_vjp(
            model.proto, seeds, wrt, rules or "default", keep, input_shape=pin, check=False
        )
        cache[key] = vg
    return sess, vg


def vjp(
    model: Model,
    inputs: Inputs,
    cotangents: Mapping[str, np.ndarray],
    wrt: Sequence[str] | str = "input",
    rules: Rules = None,
    batch_size: int | None = None,
) -> dict[str, np.ndarray]:
    """Gradients of sum <cotangent, tensor> w.r.t. each name in `wrt`, keyed by the names as given."""
    wrt_names = [wrt] if isinstance(wrt, str) else list(wrt)
    if not cotangents:
        raise ConfigurationError("no cotangents given: pass {output_or_layer_name: array}.")
    x, _ = model.prepare(inputs)
    seeds = [model.resolve(n) for n in cotangents]
    wrt_t = [model.resolve(n) for n in wrt_names]
    bs = model.batch_size_for(
        3 * model.tensor_bytes_per_sample(wrt_t + seeds) + 8 * x[0].size, batch_size
    )
    sess, vg = _graph(model, seeds, wrt_t, rules, (), x, min(bs, x.shape[0]))
    extra = {}
    for name, t in zip(cotangents, seeds, strict=True):
        arr = np.asarray(cotangents[name])
        if arr.shape[0] != x.shape[0]:
            raise ShapeError(
                f"cotangent for {name!r} has batch {arr.shape[0]}, the input has {x.shape[0]}."
            )
        extra[vg.seed_inputs[t]] = np.ascontiguousarray(arr, dtype=vg.seed_dtype(t))
    fetch = [vg.grad_outputs[t] for t in wrt_t]
    outs = model.run_batched(sess, x, fetch, bs, extra=extra)
    return dict(zip(wrt_names, outs, strict=True))


def _cotangent(
    model: Model, output: str, target: Any, n: int, probe: np.ndarray | None
) -> np.ndarray:
    """A cotangent for `output` from a class index, per-sample indices, or an explicit array."""
    if isinstance(target, np.ndarray) and target.dtype.kind == "f":
        if target.shape[0] != n:
            raise ShapeError(f"target array has batch {target.shape[0]}, the input has {n}.")
        return target
    if probe is None:
        raise ConfigurationError("internal: output shape needed for a class-index target")
    idx = np.asarray(target, dtype=np.int64).reshape(-1)
    if idx.size == 1:
        idx = np.repeat(idx, n)
    if idx.size != n:
        raise ShapeError(
            f"target has {idx.size} class indices for {n} inputs; give one, or one per input."
        )
    flat = probe.reshape(n, -1)
    if (idx < 0).any() or (idx >= flat.shape[1]).any():
        raise ConfigurationError(
            f"class index out of range for output {output!r} with {flat.shape[1]} values per sample: {idx.tolist()}."
        )
    c = np.zeros_like(flat)
    c[np.arange(n), idx] = 1
    return c.reshape(probe.shape)


def _output_shape(model: Model, output: str, x: np.ndarray) -> np.ndarray:
    """A zero array shaped like `output` for inputs `x` (static shape when known, else one run)."""
    la = next((la for la in model.layers if la.name == output), None)
    s = la.shape if la is not None else None
    if s is not None and all(isinstance(d, int) and d > 0 for d in s[1:]):
        return np.zeros((x.shape[0], *s[1:]), np.float32)  # type: ignore[misc]
    return np.zeros_like(model.activations(x[:1], [output])[output].repeat(x.shape[0], axis=0))


def activations_and_gradients(
    model: Model,
    inputs: Inputs,
    layers: Sequence[str] | str,
    target: Any,
    output: str | None = None,
    rules: Rules = None,
    batch_size: int | None = None,
    wrt_input: bool = False,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(activations, gradients of the target w.r.t. them, model outputs) in one run per batch.

    Keys of the first two are the layer names as given. `wrt_input` also returns the input
    gradient under "input".
    """
    layer_names = [layers] if isinstance(layers, str) else list(layers)
    x, _ = model.prepare(inputs)
    out_t = model.resolve(output) if output else model.output_names[0]
    if out_t not in model.output_names and out_t not in {la.name for la in model.layers}:
        raise LayerNotFoundError(out_t, model.output_names)
    tensors = [model.resolve(n) for n in layer_names]
    wrt_t = list(dict.fromkeys(tensors + ([model.input_name] if wrt_input else [])))
    keep = [t for t in dict.fromkeys(tensors) if t != model.input_name]
    bs = model.batch_size_for(
        3 * model.tensor_bytes_per_sample([*wrt_t, out_t]) + 8 * x[0].size, batch_size
    )
    sess, vg = _graph(model, [out_t], wrt_t, rules, keep, x, min(bs, x.shape[0]))
    c = _cotangent(
        model,
        out_t,
        target,
        x.shape[0],
        _output_shape(model, out_t, x)
        if not (isinstance(target, np.ndarray) and target.dtype.kind == "f")
        else None,
    )
    extra = {vg.seed_inputs[out_t]: np.ascontiguousarray(c, dtype=vg.seed_dtype(out_t))}
    fetch = list(model.output_names) + keep + [vg.grad_outputs[t] for t in wrt_t]
    res = dict(zip(fetch, model.run_batched(sess, x, fetch, bs, extra=extra), strict=True))
    acts = {
        n: (x if t == model.input_name else res[t])
        for n, t in zip(layer_names, tensors, strict=True)
    }
    grads = {n: res[vg.grad_outputs[t]] for n, t in zip(layer_names, tensors, strict=True)}
    if wrt_input:
        grads["input"] = res[vg.grad_outputs[model.input_name]]
    outs = {o: res[o] for o in model.output_names}
    return acts, grads, outs


def gradient(
    model: Model,
    inputs: Inputs,
    target: Any,
    output: str | None = None,
    wrt: Sequence[str] | str = "input",
    rules: Rules = None,
    batch_size: int | None = None,
) -> np.ndarray | dict[str, np.ndarray]:
    """Gradient of the target score w.r.t. `wrt` (see Model.gradient)."""
    x, _ = model.prepare(inputs)
    out_t = model.resolve(output) if output else model.output_names[0]
    explicit = isinstance(target, np.ndarray) and target.dtype.kind == "f"
    c = _cotangent(
        model, out_t, target, x.shape[0], None if explicit else _output_shape(model, out_t, x)
    )
    res = vjp(model, x, {out_t: c}, [wrt] if isinstance(wrt, str) else list(wrt), rules, batch_size)
    return res[wrt] if isinstance(wrt, str) else res
