"""`mine`: the top-k images and patches of every channel of chosen layers over a dataset."""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..errors import ConfigurationError
from ..model import Model
from .checkpoint import Checkpoint
from .config import (
    DEFAULT_SHARD,
    FORMAT_VERSION,
    MiningConfig,
    MiningJob,
    RayOptions,
    model_sha256,
)
from .dataset import Dataset, Shard, open_dataset
from .lock import RunLock
from .result import (
    MiningResult,
    assemble,
    layer_file,
    load,
    write_galleries,
    write_index,
    write_result,
)
from .runner import ShardRunner
from .topk import new_topk

log = logging.getLogger("onnxlens")

ENGINES = ("local", "ray")

__all__ = ["DEFAULT_SHARD", "ENGINES", "mine", "model_sha256"]


def _model_bytes(model: Model) -> bytes:
    # The loaded proto, not the file: external weights are already inlined into it, so Ray actors
    # on other nodes need nothing but these bytes.
    return model.proto.SerializeToString()


def _ray_options(
    ray: RayOptions | None,
    address: str | None,
    num_cpus: int | None,
    actors: int | None,
    cpus_per_actor: int | None,
) -> RayOptions:
    """`ray`, or the RayOptions the deprecated ray_* keywords of `mine` spell (with a warning)."""
    old = {
        "address": address,
        "num_cpus": num_cpus,
        "actors": actors,
        "cpus_per_actor": cpus_per_actor,
    }
    given = {k: v for k, v in old.items() if v is not None}
    if not given:
        return ray if ray is not None else RayOptions()
    if ray is not None:
        raise ConfigurationError(
            "mine() got both ray=RayOptions(...) and the deprecated "
            + ", ".join(f"ray_{k}=" for k in given)
            + "; pass only ray=RayOptions(...)."
        )
    spelled = ", ".join(f"{k}={v!r}" for k, v in given.items())
    warnings.warn(
        "mine(" + ", ".join(f"ray_{k}=..." for k in given) + ") is deprecated and goes in the next "
        f"release; pass ray=RayOptions({spelled}) (from onnxlens.mining import RayOptions).",
        DeprecationWarning,
        stacklevel=3,  # the caller of mine(), not mine() itself
    )
    return RayOptions(
        address=address,
        num_cpus=num_cpus,
        actors=actors,
        cpus_per_actor=1 if cpus_per_actor is None else cpus_per_actor,
    )


def mine(
    model: Model | str | os.PathLike,
    data: str | os.PathLike,
    layers: Sequence[str] | str,
    out: str | os.PathLike,
    top_k: int = 16,
    batch_size: int | None = None,
    score: str = "max",
    engine: str = "local",
    *,
    ray: RayOptions | None = None,
    restart: bool = False,
    shard_size: int = DEFAULT_SHARD,
    galleries: bool = True,
    progress: bool = True,
    device: str = "auto",
    threads: int | None = None,
    ray_address: str | None = None,
    ray_num_cpus: int | None = None,
    ray_actors: int | None = None,
    ray_cpus_per_actor: int | None = None,
) -> MiningResult:
    """For every channel of each layer, the `top_k` images of DATA by spatial `score` ("max" or
    "mean"), with the arg-max unit's (row, col) and its receptive-field box. Results go to `out`
    (format in `onnxlens.mining.result`) and are returned as by `load(out)`.

    The run is resumable: DATA is cut into shards of `shard_size` images, each finished shard is
    checkpointed atomically in `out/state/`, and re-running the same call continues where a killed
    run stopped, with a result identical to an uninterrupted run. A different model, DATA listing,
    layer set, k, score, shard size or preprocessing refuses to resume (pass `restart=True` or use
    another `out`). Batch size and engine do not change results.

    `engine="ray"` runs the shards on Ray as `ray=RayOptions(...)` says (default: a local Ray on
    every CPU). The keywords `ray_address`, `ray_num_cpus`, `ray_actors` and `ray_cpus_per_actor`
    are deprecated spellings of RayOptions' `address`, `num_cpus`, `actors`, `cpus_per_actor`.
    """
    ray = _ray_options(ray, ray_address, ray_num_cpus, ray_actors, ray_cpus_per_actor)
    job = MiningJob(
        layers=(layers,) if isinstance(layers, str) else tuple(layers),
        top_k=top_k,
        score=score,
        batch_size=batch_size,
        shard_size=shard_size,
        galleries=galleries,
    )
    if engine not in ENGINES:
        raise ConfigurationError(f"--engine must be one of {', '.join(ENGINES)}; got {engine!r}.")
    if not isinstance(model, Model):
        model = Model(model, device=device, threads=threads)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigurationError(f"--out {str(out)!r} is a file; pass a folder.")
    job = replace(job, layers=tuple(dict.fromkeys(model.resolve(name) for name in job.layers)))
    dataset = open_dataset(data)
    # One run writes `out` at a time: a second one refuses here, before it writes anything.
    with RunLock(out):
        runner = ShardRunner(model, job)
        try:
            return _Run(model, dataset, data, out, job, runner).execute(
                engine, ray, restart, progress
            )
        finally:
            runner.close()


@dataclass(frozen=True)
class _Run:
    """One `mine` call once its arguments are checked: what the phases of the run share."""

    model: Model
    dataset: Dataset
    data: str | os.PathLike
    out: Path
    job: MiningJob
    runner: ShardRunner

    def config(self, channels: Sequence[int]) -> MiningConfig:
        model, dataset = self.model, self.dataset
        return MiningConfig(
            model_sha256=model_sha256(model),
            model_name=model.name,
            data=str(Path(self.data).resolve()),
            data_kind=dataset.kind,
            data_fingerprint=dataset.fingerprint(),
            items=len(dataset),
            layers=self.job.layers,
            channels=tuple(channels),
            top_k=self.job.top_k,
            score=self.job.score,
            shard_size=self.job.shard_size,
            preprocess=model.preprocess.to_dict(),
            image_size=tuple(model.preprocess.size),  # type: ignore[arg-type]
        )

    def execute(self, engine: str, ray: RayOptions, restart: bool, progress: bool) -> MiningResult:
        out, job, runner = self.out, self.job, self.runner
        channels, grids = runner.channels(self.dataset)
        config = self.config(channels)
        ckpt = Checkpoint(out)
        ckpt.begin(config, restart, out)
        if restart:
            (out / "result.json").unlink(missing_ok=True)
        shards = self.dataset.shards(job.shard_size)
        done = ckpt.verified(list(job.layers))
        todo = [s for s in shards if s.index not in done]
        if done:
            log.info(
                "onnxlens: resuming %s: %d of %d shards already done.",
                out,
                len(shards) - len(todo),
                len(shards),
            )
        t0 = time.perf_counter()
        if todo and engine == "local":
            from .local import run_local

            done_items = sum(len(s) for s in shards if s.index in done)
            run_local(runner, self.dataset, todo, channels, ckpt, progress, done_items)
        elif todo:
            from .ray_engine import run_ray

            run_ray(
                # The runner's batch size: a fixed-batch model's own, not the requested one.
                replace(job, batch_size=runner.batch_size),
                ray,
                _model_bytes(self.model),
                self.model.preprocess,
                config.data,
                channels,
                todo,
                ckpt,
                device="cpu" if self.model.device == "auto" else self.model.device,
                progress=progress,
            )
        log.info("onnxlens: mined %d shards in %.1f s.", len(todo), time.perf_counter() - t0)
        missing = {s.index for s in shards} - ckpt.done()
        if missing:
            raise ConfigurationError(
                f"shards {sorted(missing)[:10]} did not finish; re-run the same command to resume."
            )
        return self.finish(config, shards, ckpt, grids)

    def finish(
        self,
        config: MiningConfig,
        shards: Sequence[Shard],
        ckpt: Checkpoint,
        grids: Sequence[tuple[int, int]],
    ) -> MiningResult:
        """Merge the finished shards; write the result files, the galleries and the index."""
        model, dataset, out, job = self.model, self.dataset, self.out, self.job
        tensors, channels, image_size = list(job.layers), config.channels, config.image_size
        # Merge in shard order (any order gives the same states; this one is just deterministic I/O).
        total = {name: new_topk(c, job.top_k) for name, c in zip(tensors, channels, strict=True)}
        skipped: list[tuple[str, str]] = []
        for s in shards:
            states, sk = ckpt.load_shard(s.index, tensors)
            for name in tensors:
                total[name].merge(states[name])
            skipped += sk
        rf = self.runner.fields
        arrays: dict[str, dict[str, np.ndarray]] = {}
        meta_layers = []
        for name, c, grid in zip(tensors, channels, grids, strict=True):
            st = total[name]
            f = rf.field(name)
            ids = np.asarray(st.ids())
            payload = np.asarray(st.payload())
            pos = payload.reshape((*ids.shape, 2)).copy()
            pos[ids < 0] = -1
            boxes = rf.boxes(name, pos, image_size)  # type: ignore[arg-type]
            arrays[name] = assemble(st.values(), ids, pos, st.counts(), dataset, boxes)
            meta_layers.append(
                {
                    "name": name,
                    "file": layer_file(name),
                    "channels": c,
                    "grid": list(grid),
                    "receptive_field": {
                        "whole": f.whole,
                        "reason": f.reason,
                        "stride": list(f.jump),
                        "size": list(f.size),
                        "offset": list(f.lo),
                        "notes": list(f.notes),
                    },
                }
            )
        n_skipped = len(skipped)
        meta = {
            "format_version": FORMAT_VERSION,
            "model": model.name,
            "model_sha256": config.model_sha256,
            "data": str(self.data),
            "data_kind": dataset.kind,
            "items": len(dataset),
            "images_mined": len(dataset) - n_skipped,
            "skipped_count": n_skipped,
            "layers": meta_layers,
            "top_k": job.top_k,
            "score": job.score,
            "shard_size": job.shard_size,
            "image_size": list(image_size),
            "preprocess": model.preprocess.to_dict(),
            "boxes": "y0, x0, y1, x1 in model-input pixels; half-open; clipped at the borders",
            "positions": "row, col of the arg-max unit in the layer grid",
        }
        if job.galleries:
            write_galleries(
                out, dataset, model.preprocess.fit, arrays, {n: rf.field(n) for n in tensors}
            )
        write_index(out, meta, arrays, job.galleries)
        write_result(out, meta, arrays, skipped)
        if n_skipped:
            log.warning(
                "onnxlens: skipped %d unreadable items (listed in %s).",
                n_skipped,
                out / "skipped.json",
            )
        return load(out)
