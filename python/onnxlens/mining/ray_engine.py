"""The Ray engine (optional extra `onnxlens[ray]`): a Ray Data pipeline over shards.

Each row of the pipeline is one shard; `map_batches` sends rows to a pool of stateful actors, each
holding one ONNX Runtime session whose intra-op threads equal the CPUs the actor reserved. An actor
reads its shard's images itself (DATA must be on storage every node sees), mines it, and returns
the serialised per-layer top-k states. The driver writes each returned shard to the same
checkpoint as the local engine as soon as it arrives, so a killed Ray run resumes like a local one,
and the final merge is exact whatever order the shards finish in.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..data.preprocess import PreprocessSpec
from ..errors import ConfigurationError
from .dataset import Shard
from .state import Checkpoint, load_topk

log = logging.getLogger("onnxlens")


def _import_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise ConfigurationError(
            "the Ray engine needs Ray Data; install it with `pip install 'onnxlens[ray]'` (or "
            "`pip install 'ray[data]'`), or use --engine local."
        ) from exc
    return ray


class ShardActor:
    """A Ray Data callable class: one model session per actor, one shard per call."""

    def __init__(
        self,
        model_bytes: bytes,
        preprocess: PreprocessSpec,
        data: str,
        layers: Sequence[str],
        channels: Sequence[int],
        top_k: int,
        score: str,
        batch_size: int | None,
        threads: int,
        device: str,
    ) -> None:
        from ..model import Model
        from .dataset import open_dataset
        from .runner import ShardRunner

        model = Model(model_bytes, device=device, threads=threads, preprocess=preprocess)
        self.dataset = open_dataset(data)
        self.channels = list(channels)
        self.runner = ShardRunner(
            model, layers, top_k, score, batch_size, decode_threads=max(1, threads)
        )

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out: dict[str, list] = {"shard": [], "skipped": []}
        for j in range(len(self.runner.layers)):
            out[f"layer{j}"] = []
        for index, start, stop in zip(batch["shard"], batch["start"], batch["stop"], strict=True):
            states, skipped = self.runner.run_shard(
                self.dataset, Shard(int(index), int(start), int(stop)), self.channels
            )
            out["shard"].append(int(index))
            out["skipped"].append(json.dumps(skipped))
            for j, name in enumerate(self.runner.layers):
                out[f"layer{j}"].append(states[name].serialise())
        return {
            k: np.array(v, dtype=object) if k != "shard" else np.array(v, np.int64)
            for k, v in out.items()
        }


def run_ray(
    model_bytes: bytes,
    preprocess: PreprocessSpec,
    data: str,
    layers: Sequence[str],
    channels: Sequence[int],
    top_k: int,
    score: str,
    batch_size: int | None,
    shards: Sequence[Shard],
    checkpoint: Checkpoint,
    address: str | None = None,
    num_cpus: int | None = None,
    actors: int | None = None,
    cpus_per_actor: int = 1,
    device: str = "cpu",
    progress: bool = True,
) -> None:
    """Mine `shards` on Ray: a local Ray started here (`num_cpus` CPUs, default all) unless
    `address` names a cluster ("auto" for the one this machine belongs to)."""
    ray = _import_ray()
    started = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {
            "include_dashboard": False,
            "log_to_driver": False,
            "configure_logging": False,
        }
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=num_cpus, **kwargs)
        started = True
    try:
        if not shards:
            return 0.0
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = progress
        total = int(ray.cluster_resources().get("CPU", 1))
        n_actors = actors or max(1, total // cpus_per_actor)
        n_actors = min(n_actors, len(shards))
        rows = [{"shard": s.index, "start": s.start, "stop": s.stop} for s in shards]
        ds = ray.data.from_items(rows, override_num_blocks=len(rows))
        mined = ds.map_batches(
            ShardActor,
            fn_constructor_kwargs={
                "model_bytes": model_bytes,
                "preprocess": preprocess,
                "data": data,
                "layers": list(layers),
                "channels": list(channels),
                "top_k": top_k,
                "score": score,
                "batch_size": batch_size,
                "threads": cpus_per_actor,
                "device": device,
            },
            batch_size=1,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=n_actors),
            num_cpus=cpus_per_actor,
        )
        for row in mined.iter_rows():
            states = {name: load_topk(bytes(row[f"layer{j}"])) for j, name in enumerate(layers)}
            skipped = [tuple(s) for s in json.loads(row["skipped"])]
            checkpoint.save_shard(int(row["shard"]), layers, states, skipped)  # type: ignore[arg-type]
    finally:
        if started:
            ray.shutdown()
