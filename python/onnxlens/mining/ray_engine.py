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
from .checkpoint import Checkpoint
from .config import MiningJob, RayOptions
from .dataset import Shard
from .topk import load_topk

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
        job: MiningJob,
        channels: Sequence[int],
        threads: int,
        device: str,
    ) -> None:
        from ..model import Model
        from .dataset import open_dataset
        from .runner import ShardRunner

        model = Model(model_bytes, device=device, threads=threads, preprocess=preprocess)
        self.dataset = open_dataset(data)
        self.channels = list(channels)
        self.runner = ShardRunner(model, job, decode_threads=max(1, threads))

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
    job: MiningJob,
    ray_options: RayOptions,
    model_bytes: bytes,
    preprocess: PreprocessSpec,
    data: str,
    channels: Sequence[int],
    shards: Sequence[Shard],
    checkpoint: Checkpoint,
    device: str = "cpu",
    progress: bool = True,
) -> None:
    """Mine `shards` of `job` on Ray: a local Ray started here (`ray_options.num_cpus` CPUs,
    default all) unless `ray_options.address` names a cluster ("auto" for the one this machine
    belongs to). DATA (`data`, resolved) must be on storage every node sees."""
    ray = _import_ray()
    started = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {
            "include_dashboard": False,
            "log_to_driver": False,
            "configure_logging": False,
        }
        if ray_options.address:
            ray.init(address=ray_options.address, **kwargs)
        else:
            ray.init(num_cpus=ray_options.num_cpus, **kwargs)
        started = True
    try:
        if not shards:
            return
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = progress
        cpus_per_actor = ray_options.cpus_per_actor
        n_actors = ray_options.actor_count(int(ray.cluster_resources().get("CPU", 1)), len(shards))
        rows = [{"shard": s.index, "start": s.start, "stop": s.stop} for s in shards]
        ds = ray.data.from_items(rows, override_num_blocks=len(rows))
        mined = ds.map_batches(
            ShardActor,
            fn_constructor_kwargs={
                "model_bytes": model_bytes,
                "preprocess": preprocess,
                "data": data,
                "job": job,
                "channels": list(channels),
                "threads": cpus_per_actor,
                "device": device,
            },
            batch_size=1,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=n_actors),
            num_cpus=cpus_per_actor,
        )
        layers = list(job.layers)
        for row in mined.iter_rows():
            states = {name: load_topk(bytes(row[f"layer{j}"])) for j, name in enumerate(layers)}
            skipped = [tuple(s) for s in json.loads(row["skipped"])]
            checkpoint.save_shard(int(row["shard"]), layers, states, skipped)  # type: ignore[arg-type]
    finally:
        if started:
            ray.shutdown()
