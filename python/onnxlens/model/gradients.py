"""The model's gradient component: compiled VJP functions, cached per variant, and the
array-level entry points (vjp, gradient, activations and gradients in one run) Model exposes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from ..autodiff import VJPFunction, VJPGraph, build_vjp, tune_for_cpu
from ..autodiff.build import Rules
from ..errors import ConfigurationError, LayerNotFoundError, ShapeError
from ..runtime import GraphKey
from .targets import cotangent_for, is_cotangent, resolve_target

if TYPE_CHECKING:
    from .core import Inputs, Model

log = logging.getLogger("onnxlens")


@dataclass(frozen=True)
class VJPVariant:
    """What makes two VJP graphs of one model the same graph (the graph cache key).

    A rule set is keyed by its contents (the rule functions themselves), never by id(): a
    collected set's address reused by a new one would hand back a graph built with old rules.
    """

    seeds: tuple[str, ...]
    wrt: tuple[str, ...]
    rules: Any
    keep: tuple[str, ...]
    pinned: tuple[int, ...] | None

    @staticmethod
    def rules_key(rules: Rules) -> Any:
        return rules if rules is None or isinstance(rules, str) else frozenset(dict(rules).items())


class Gradients:
    """Owns every VJP graph and compiled function of one Model.

    Graphs are cached per :class:`VJPVariant`; functions per variant and batch size. On the CPU
    a function's session runs the graph pinned to its batch (`autodiff.tune_for_cpu`), so the
    first call at a new batch size pays a session build (about 1 s for ResNet-50).
    """

    def __init__(self, model: Model) -> None:
        self._model = model
        self._graphs: dict[VJPVariant, VJPGraph] = {}

    # -- compiled functions ----------------------------------------------------------------------

    def clear(self) -> None:
        """Forget the VJP graphs built so far (Model.clear_sessions drops their sessions)."""
        self._graphs.clear()

    def variant(
        self,
        seeds: Sequence[str],
        wrt: Sequence[str],
        rules: Rules = None,
        keep: Sequence[str] = (),
        input_shape: Sequence[int] | None = None,
    ) -> VJPVariant:
        m = self._model
        seeds_t = tuple(dict.fromkeys(m.resolve(s) for s in seeds))
        wrt_t = tuple(dict.fromkeys(m.resolve(w) for w in wrt))
        keep_t = tuple(dict.fromkeys(m.resolve(k) for k in keep))
        shape = m.input.shape
        pinned = None
        if input_shape is not None and not (
            shape is not None and all(isinstance(d, int) and d > 0 for d in shape[1:])
        ):
            pinned = tuple(int(d) for d in input_shape[1:])
        return VJPVariant(seeds_t, wrt_t, VJPVariant.rules_key(rules), keep_t, pinned)

    def graph(self, v: VJPVariant, rules: Rules = None) -> VJPGraph:
        """The VJP graph of a variant (built once per model)."""
        g = self._graphs.get(v)
        if g is None:
            pin = (None, *v.pinned) if v.pinned is not None else None
            g = build_vjp(
                self._model.proto, v.seeds, v.wrt, rules or "default", v.keep, input_shape=pin
            )
            self._graphs[v] = g
        return g

    def function(
        self,
        seeds: Sequence[str],
        wrt: Sequence[str] = ("input",),
        rules: Rules = None,
        keep: Sequence[str] = (),
        batch: int | None = None,
        input_shape: Sequence[int] | None = None,
    ) -> VJPFunction:
        """The compiled VJP of this model for (seeds, wrt, rules, keep) at `batch` samples a call.

        `input_shape` (batch first) pins a dynamic-size input's dims. Build it once and call it
        many times: `f({input_name: x}, {seed: cotangent})` is one ONNX Runtime run.
        """
        m = self._model
        v = self.variant(seeds, wrt, rules, keep, input_shape)
        for i in m.inputs:
            if i.name in v.wrt and i.dtype.kind != "f":
                raise ConfigurationError(
                    f"input {i.name!r} is {i.dtype}: gradients w.r.t. integer values do not exist. "
                    "Differentiate w.r.t. a float layer after the model converts it (wrt=...; see "
                    "`onnxlens inspect`)."
                )
        tune = batch is not None and m.input.batch is None and m.on_cpu
        key = GraphKey("vjp", (v,), batch if tune else None)
        graph = self.graph(v, rules)  # cached per variant: the session below may be rebuilt

        def build() -> onnx.ModelProto:
            return tune_for_cpu(graph.proto, batch) if tune and batch else graph.proto

        return VJPFunction(graph, m.session(key, build), batch if tune else None)

    # -- array entry points ----------------------------------------------------------------------
    def _pinned_shape(self, x: np.ndarray) -> tuple[int, ...] | None:
        shape = self._model.input.shape
        if shape is None or all(isinstance(d, int) and d > 0 for d in shape[1:]):
            return None
        return tuple(x.shape)

    def vjp(
        self,
        inputs: Inputs,
        cotangents: Mapping[str, np.ndarray],
        wrt: Sequence[str] | str = "input",
        rules: Rules = None,
        batch_size: int | None = None,
    ) -> dict[str, np.ndarray]:
        """Gradients of sum <cotangent, tensor> w.r.t. each name in `wrt`, keyed as given."""
        m = self._model
        wrt_names = [wrt] if isinstance(wrt, str) else list(wrt)
        if not cotangents:
            raise ConfigurationError("no cotangents given: pass {output_or_layer_name: array}.")
        x, _ = m.prepare(inputs)
        seeds = [m.resolve(n) for n in cotangents]
        wrt_t = [m.resolve(n) for n in wrt_names]
        bs = m.batch_size_for(
            3 * m.tensor_bytes_per_sample(wrt_t + seeds) + 8 * x[0].size, batch_size
        )
        f = self.function(
            seeds, wrt_t, rules, (), min(bs, x.shape[0]), input_shape=self._pinned_shape(x)
        )
        for name, c in cotangents.items():
            if np.asarray(c).shape[0] != x.shape[0]:
                raise ShapeError(
                    f"cotangent for {name!r} has batch {np.asarray(c).shape[0]}, the input has "
                    f"{x.shape[0]}."
                )
        extra = f.seed_feeds({m.resolve(n): np.asarray(c) for n, c in cotangents.items()})
        fetch = [f.graph.grad_outputs[t] for t in wrt_t]
        outs = m.run_batched(f.session, x, fetch, bs, extra=extra)
        return dict(zip(wrt_names, outs, strict=True))

    def output_shape(self, output: str, x: np.ndarray) -> tuple[int, ...]:
        """The shape of `output` for inputs `x` (static when known, else from one run)."""
        m = self._model
        la = next((la for la in m.layers if la.name == output), None)
        s = la.shape if la is not None else None
        if s is not None and all(isinstance(d, int) and d > 0 for d in s[1:]):
            return (x.shape[0], *(int(d) for d in s[1:]))  # type: ignore[arg-type]
        one = m.activations(x[:1], [output])[output]
        return (x.shape[0], *one.shape[1:])

    def _cotangent(self, output: str, target: object, x: np.ndarray) -> np.ndarray:
        n = x.shape[0]
        if is_cotangent(target):
            return resolve_target(target, n, None)
        if target is None:
            raise ConfigurationError(
                "target is required: a class index, one per input, or a float cotangent array."
            )
        shape = self.output_shape(output, x)
        return cotangent_for(resolve_target(target, n, shape), shape)

    def _output(self, output: str | None) -> str:
        m = self._model
        out_t = m.resolve(output) if output else m.output_names[0]
        if out_t not in m.output_names and out_t not in {la.name for la in m.layers}:
            raise LayerNotFoundError(out_t, m.output_names)
        return out_t

    def activations_and_gradients(
        self,
        inputs: Inputs,
        layers: Sequence[str] | str,
        target: object,
        output: str | None = None,
        rules: Rules = None,
        batch_size: int | None = None,
        wrt_input: bool = False,
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]:
        """(activations, gradients of the target w.r.t. them, model outputs) in one run per batch.

        Keys of the first two are the layer names as given. `wrt_input` also returns the input
        gradient under "input".
        """
        m = self._model
        layer_names = [layers] if isinstance(layers, str) else list(layers)
        x, _ = m.prepare(inputs)
        out_t = self._output(output)
        tensors = [m.resolve(n) for n in layer_names]
        wrt_t = list(dict.fromkeys(tensors + ([m.input_name] if wrt_input else [])))
        keep = [t for t in dict.fromkeys(tensors) if t != m.input_name]
        bs = m.batch_size_for(
            3 * m.tensor_bytes_per_sample([*wrt_t, out_t]) + 8 * x[0].size, batch_size
        )
        f = self.function(
            [out_t], wrt_t, rules, keep, min(bs, x.shape[0]), input_shape=self._pinned_shape(x)
        )
        extra = f.seed_feeds({out_t: self._cotangent(out_t, target, x)})
        grad_names = [f.graph.grad_outputs[t] for t in wrt_t]
        fetch = list(m.output_names) + list(f.graph.keep) + grad_names
        res = dict(zip(fetch, m.run_batched(f.session, x, fetch, bs, extra=extra), strict=True))
        acts = {
            n: (x if t == m.input_name else res[t])
            for n, t in zip(layer_names, tensors, strict=True)
        }
        grads = {n: res[f.graph.grad_outputs[t]] for n, t in zip(layer_names, tensors, strict=True)}
        if wrt_input:
            grads["input"] = res[f.graph.grad_outputs[m.input_name]]
        outs = {o: res[o] for o in m.output_names}
        return acts, grads, outs

    def gradient(
        self,
        inputs: Inputs,
        target: object,
        output: str | None = None,
        wrt: Sequence[str] | str = "input",
        rules: Rules = None,
        batch_size: int | None = None,
    ) -> np.ndarray | dict[str, np.ndarray]:
        """Gradient of the target score w.r.t. `wrt` (see Model.gradient)."""
        x, _ = self._model.prepare(inputs)
        out_t = self._output(output)
        c = self._cotangent(out_t, target, x)
        res = self.vjp(
            x, {out_t: c}, [wrt] if isinstance(wrt, str) else list(wrt), rules, batch_size
        )
        return res[wrt] if isinstance(wrt, str) else res
