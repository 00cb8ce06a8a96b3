"""VJPFunction: a VJP graph compiled once and called many times (one ONNX Runtime run a call).

An optimisation loop (feature visualisation, deep dream, style transfer) evaluates the same
gradient hundreds of times on new inputs. Everything that does not depend on the input values is
done once, when the function is built: the VJP graph, the session (pinned to the batch size and
tuned for the CPU's blocked layout there), the feed names and dtypes, the output order. A call is
a dict lookup per feed and one `session.run`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from ..errors import ConfigurationError, ShapeError
from ..runtime import denormals
from ..runtime.session import detached, make_session
from .build import Rules, VJPGraph, build_vjp
from .cpu_graph import tune_for_cpu


@dataclass(frozen=True)
class VJPResult:
    """What one call returns, keyed by tensor name.

    gradients: {wrt tensor: gradient shaped like the tensor}; activations: {kept tensor: value};
    outputs: {model output: value}.
    """

    gradients: dict[str, np.ndarray]
    activations: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]


class VJPFunction:
    """Gradients of sum_k <cotangent_k, seed_k> w.r.t. the `wrt` tensors of a VJP graph.

    Build it with :meth:`compile` (from a model proto) or from a :class:`VJPGraph` and a session;
    then ``f(feeds, cotangents)`` runs the graph once. `feeds` are the model's runtime inputs by
    name, `cotangents` one array per seed tensor, shaped like it. A function built with
    `batch=` runs exactly that many samples per call (the CPU session is pinned to it).
    """

    def __init__(
        self,
        graph: VJPGraph,
        session: ort.InferenceSession,
        batch: int | None = None,
        flush_denormals: bool = False,
    ) -> None:
        self.graph = graph
        self.flush_denormals = flush_denormals
        self.session = session
        self.batch = batch
        self._seed_feeds = {t: (name, graph.seed_dtype(t)) for t, name in graph.seed_inputs.items()}
        self._input_names = [i.name for i in session.get_inputs()]
        self._primal_inputs = [n for n in self._input_names if n not in graph.seed_inputs.values()]
        # One fetch list, in a fixed order: outputs, kept activations, gradients.
        self._fetch = [*graph.primal_outputs, *graph.keep, *graph.grad_outputs.values()]
        # Declared per-sample dims of every feed (None where dynamic): checked per call, so a
        # wrong shape is an onnxlens error that names the tensor, not ORT's InvalidArgument.
        self._dims = {
            i.name: [d if isinstance(d, int) and d > 0 else None for d in i.shape]
            for i in session.get_inputs()
        }
        self._seed_of = {name: t for t, name in graph.seed_inputs.items()}
        self._split = (len(graph.primal_outputs), len(graph.keep))

    @classmethod
    def compile(
        cls,
        proto,
        seeds: Sequence[str],
        wrt: Sequence[str],
        rules: Rules = "default",
        keep: Sequence[str] = (),
        input_shape: Sequence[int | None] | None = None,
        batch: int | None = None,
        device: str = "cpu",
        threads: int | None = None,
        spinning: bool = True,
        flush_denormals: bool = False,
    ) -> VJPFunction:
        """Build the VJP graph of `proto` and its session in one go.

        On the CPU with `batch` given, the session runs `tune_for_cpu(graph, batch)` (the batch
        pinned, masks kept in NCHWc): the fastest form, at that batch size only. `spinning`:
        see `runtime.session.make_session` (False for callers that work between runs).
        `flush_denormals`: every run flushes denormal floats to zero, on ORT's workers and the
        calling thread (`runtime.denormals`): for optimisation loops, whose gradients decay.
        """
        from ..runtime.device import resolve_providers

        graph = build_vjp(proto, seeds, wrt, rules, keep, input_shape=input_shape)
        on_cpu = resolve_providers(device)[0] == "CPUExecutionProvider"
        run_proto = tune_for_cpu(graph.proto, batch) if on_cpu and batch else graph.proto
        session = make_session(
            run_proto, device, threads, spinning=spinning, flush_denormals=flush_denormals
        )
        return cls(graph, session, batch, flush_denormals=flush_denormals)

    @property
    def seeds(self) -> list[str]:
        """The seeded tensors, in the order the graph was built with."""
        return list(self.graph.seed_inputs)

    @property
    def wrt(self) -> list[str]:
        return list(self.graph.grad_outputs)

    @property
    def inputs(self) -> list[str]:
        """The model inputs a call feeds (the seeds come separately, as cotangents)."""
        return list(self._primal_inputs)

    def seed_feeds(self, cotangents: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The cotangents under their seed input names, in the dtypes the graph takes."""
        missing = [t for t in self._seed_feeds if t not in cotangents]
        if missing:
            raise ConfigurationError(
                f"no cotangent for {', '.join(map(repr, missing))}; this function was compiled "
                f"with seeds {self.seeds}."
            )
        return {
            name: np.ascontiguousarray(cotangents[t], dtype=dtype)
            for t, (name, dtype) in self._seed_feeds.items()
        }

    def feeds(
        self, feeds: Mapping[str, np.ndarray], cotangents: Mapping[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """The session feeds of a call: model inputs as given, cotangents under their seed names."""
        missing = [n for n in self._primal_inputs if n not in feeds]
        if missing:
            raise ConfigurationError(
                f"no value for input {', '.join(map(repr, missing))}; feed {self.inputs}."
            )
        out = {n: feeds[n] for n in self._primal_inputs}
        seeds = self.seed_feeds(cotangents)
        n0 = next(iter(out.values())).shape[0] if out else None
        for t, (name, _) in self._seed_feeds.items():
            if n0 is not None and seeds[name].shape[0] != n0:
                raise ShapeError(
                    f"the cotangent for {t!r} has batch {seeds[name].shape[0]}, the inputs have "
                    f"{n0}."
                )
        out.update(seeds)
        for name, arr in out.items():
            self._check(name, arr)
        return out

    def _check(self, name: str, arr: np.ndarray) -> None:
        want = self._dims.get(name)
        if want is None:
            return
        what = (
            f"the cotangent for {self._seed_of[name]!r}"
            if name in self._seed_of
            else f"input {name!r}"
        )
        if arr.ndim != len(want) or any(
            w is not None and w != g for w, g in zip(want, arr.shape, strict=False)
        ):
            shown = tuple("?" if w is None else w for w in want)
            hint = (
                f" (this function was compiled for batch {self.batch})"
                if self.batch is not None and arr.ndim and arr.shape[0] != self.batch
                else ""
            )
            raise ShapeError(f"{what} must have shape {shown}, got {arr.shape}{hint}.")

    def run(
        self, feeds: Mapping[str, np.ndarray], fetch: Sequence[str] | None = None
    ) -> list[np.ndarray]:
        """One session run on prepared feeds (see :meth:`feeds`); `fetch` defaults to everything.
        The arrays are ORT's own and keep the session's arena alive (`runtime.session.detached`):
        for loops that use them at once; a call (`f(feeds, cotangents)`) returns copies."""
        names = list(fetch) if fetch is not None else self._fetch
        if self.flush_denormals:
            with denormals.flushed():
                return self.session.run(names, dict(feeds))
        return self.session.run(names, dict(feeds))

    def __call__(
        self, feeds: Mapping[str, np.ndarray], cotangents: Mapping[str, np.ndarray]
    ) -> VJPResult:
        outs = detached(self.run(self.feeds(feeds, cotangents)))
        n_out, n_keep = self._split
        primal = dict(zip(self.graph.primal_outputs, outs[:n_out], strict=True))
        kept = dict(zip(self.graph.keep, outs[n_out : n_out + n_keep], strict=True))
        grads = dict(zip(self.graph.grad_outputs, outs[n_out + n_keep :], strict=True))
        return VJPResult(grads, kept, primal)

    def __repr__(self) -> str:
        b = "dynamic" if self.batch is None else self.batch
        return f"VJPFunction(seeds={self.seeds}, wrt={self.wrt}, keep={self.graph.keep}, batch={b})"
