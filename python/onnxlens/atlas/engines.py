"""Where visualisation batches run: here (`local`) or as Ray tasks (`ray`).

A batch is (kind, layer, items, seed): kind "channel" (items are channels of `layer`) or
"class" (items are class indices). Both engines call the same `render_batch`, with the same
seed per batch, so they return the same images; the driver writes every result itself, in the
order batches finish, each batch atomically.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..data.preprocess import PreprocessSpec
from ..errors import ConfigurationError
from ..mining.config import RayOptions
from ..model import Model


@dataclass(frozen=True)
class Batch:
    kind: str  # "channel" | "class"
    layer: str  # the layer of a channel batch; "" for classes
    index: int
    items: tuple[int, ...]
    seed: int


@dataclass(frozen=True)
class Synthesis:
    """The visualisation settings every batch shares."""

    steps: int
    size: tuple[int, int]


def render_batch(model: Model, batch: Batch, synth: Synthesis) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images (n, H, W, 3), objective values (n,)) of one batch. A KeyboardInterrupt
    while it runs propagates: a half-optimised batch is never saved."""
    from .. import synthesis as S

    vm = S.model_at_size(model, synth.size)
    if batch.kind == "channel":
        objs = [S.channel(batch.layer, c) for c in batch.items]
    else:
        objs = [S.class_logit(k) for k in batch.items]
    res = S.visualize(vm, objs, steps=synth.steps, seed=batch.seed, progress=False)
    if res.settings.get("interrupted"):
        raise KeyboardInterrupt
    return res.images, np.asarray(res.final, np.float32)


def run_local(
    model: Model, batches: Sequence[Batch], synth: Synthesis
) -> Iterator[tuple[Batch, np.ndarray, np.ndarray]]:
    for b in batches:
        images, final = render_batch(model, b, synth)
        yield b, images, final


def _task(
    model_bytes: bytes, preprocess: PreprocessSpec, threads: int, batch: Batch, synth: Synthesis
) -> tuple[Batch, np.ndarray, np.ndarray]:
    # One Model per task: Ray may place any task on any worker; the session build (~1 s) is
    # small next to a batch's hundreds of VJP runs.
    model = Model(model_bytes, device="cpu", threads=threads, preprocess=preprocess)
    images, final = render_batch(model, batch, synth)
    return batch, images, final


def import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ConfigurationError(
            "--engine ray needs Ray: `pip install 'onnxlens[ray]'`, or use --engine local."
        ) from exc
    return ray


def start_ray(options: RayOptions) -> Callable[[], None]:
    """Join or start Ray as `options` say; returns the function that undoes it (a no-op when
    Ray was already running in this process)."""
    ray = import_ray()
    if ray.is_initialized():
        return lambda: None
    kwargs: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "configure_logging": False,
    }
    if options.address:
        ray.init(address=options.address, **kwargs)
    else:
        ray.init(num_cpus=options.num_cpus, **kwargs)
    return ray.shutdown


def run_ray(
    model: Model, batches: Sequence[Batch], synth: Synthesis, options: RayOptions
) -> Iterator[tuple[Batch, np.ndarray, np.ndarray]]:
    """Every batch as one Ray task of `options.cpus_per_actor` CPUs; results as they finish."""
    ray = import_ray()
    if not batches:
        return
    remote = ray.remote(num_cpus=options.cpus_per_actor)(_task)
    blob = ray.put(model.proto.SerializeToString())
    pending = [
        remote.remote(blob, model.preprocess, options.cpus_per_actor, b, synth) for b in batches
    ]
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield ray.get(done[0])
    finally:
        for ref in pending:  # Ctrl-C or an error: stop the rest
            ray.cancel(ref, force=True)
