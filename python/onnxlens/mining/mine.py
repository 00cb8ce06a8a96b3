"""`mine`: the top-k images and patches of every channel of chosen layers over a dataset."""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import external_data_helper

from ..errors import ConfigurationError
from ..graph.reduce import SCORES
from ..model import Model
from .dataset import Dataset, open_dataset
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
from .state import FORMAT_VERSION, Checkpoint, MiningConfig, file_sha256, new_topk

log = logging.getLogger("onnxlens")

ENGINES = ("local", "ray")
DEFAULT_SHARD = 1024


def model_sha256(model: Model) -> str:
    """The model file's sha256, chained with those of its external-data files when it has any
    (weights saved beside a large model); the serialised proto when it came from memory."""
    if model.path is not None and model.path.is_file():
        digest = file_sha256(model.path)
        locations = _external_locations(model.path)
        if not locations:
            return digest
        h = hashlib.sha256(digest.encode())
        for loc in locations:
            h.update(loc.encode() + b"\0" + file_sha256(model.path.parent / loc).encode())
        return h.hexdigest()
    return hashlib.sha256(model.proto.SerializeToString(deterministic=True)).hexdigest()


def _external_locations(path: Path) -> list[str]:
    """Sorted external-data file names the model at `path` refers to (load already checked they
    stay inside its folder)."""
    proto = onnx.load(str(path), load_external_data=False)
    found = set()
    for t in external_data_helper._get_all_tensors(proto):
        if external_data_helper.uses_external_data(t):
            found.update(e.value for e in t.external_data if e.key == "location")
    return sorted(found)


def _model_bytes(model: Model) -> bytes:
    # The loaded proto, not the file: external weights are already inlined into it, so Ray actors
    # on other nodes need nothing but these bytes.
    return model.proto.SerializeToString()


def mine(
    model: Model | str | os.PathLike,
    data: str | os.PathLike,
    layers: Sequence[str] | str,
    out: str | os.PathLike,
    top_k: int = 16,
    batch_size: int | None = None,
    score: str = "max",
    engine: str = "local",
    ray_address: str | None = None,
    ray_num_cpus: int | None = None,
    ray_actors: int | None = None,
    ray_cpus_per_actor: int = 1,
    restart: bool = False,
    shard_size: int = DEFAULT_SHARD,
    galleries: bool = True,
    progress: bool = True,
    device: str = "auto",
    threads: int | None = None,
) -> MiningResult:
    """For every channel of each layer, the `top_k` images of DATA by spatial `score` ("max" or
    "mean"), with the arg-max unit's (row, col) and its receptive-field box. Results go to `out`
    (format in `onnxlens.mining.result`) and are returned as by `load(out)`.

    The run is resumable: DATA is cut into shards of `shard_size` images, each finished shard is
    checkpointed atomically in `out/state/`, and re-running the same call continues where a killed
    run stopped, with a result identical to an uninterrupted run. A different model, DATA listing,
    layer set, k, score, shard size or preprocessing refuses to resume (pass `restart=True` or use
    another `out`). Batch size and engine do not change results.
    """
    if score not in SCORES:
        raise ConfigurationError(f"--score must be one of {', '.join(SCORES)}; got {score!r}.")
    if engine not in ENGINES:
        raise ConfigurationError(f"--engine must be one of {', '.join(ENGINES)}; got {engine!r}.")
    if int(top_k) < 1:
        raise ConfigurationError(f"--top-k must be >= 1, got {top_k}.")
    if batch_size is not None and int(batch_size) < 1:
        raise ConfigurationError(f"--batch-size must be >= 1, got {batch_size}.")
    if isinstance(layers, str):
        layers = [layers]
    if not layers:
        raise ConfigurationError(
            "no layers given; pass --layers L1 [L2 ...] (see `onnxlens inspect MODEL`)."
        )
    if not isinstance(model, Model):
        model = Model(model, device=device, threads=threads)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigurationError(f"--out {str(out)!r} is a file; pass a folder.")
    tensors = list(dict.fromkeys(model.resolve(name) for name in layers))
    dataset = open_dataset(data)
    runner = ShardRunner(model, tensors, top_k, score, batch_size)
    try:
        return _mine(
            model, dataset, data, tensors, out, runner, int(top_k), score, engine, ray_address, ray_num_cpus,
            ray_actors, ray_cpus_per_actor, restart, int(shard_size), galleries, progress,
        )  # fmt: skip
    finally:
        runner.close()


def _mine(
    model: Model,
    dataset: Dataset,
    data: str | os.PathLike,
    tensors: list[str],
    out: Path,
    runner: ShardRunner,
    top_k: int,
    score: str,
    engine: str,
    ray_address: str | None,
    ray_num_cpus: int | None,
    ray_actors: int | None,
    ray_cpus_per_actor: int,
    restart: bool,
    shard_size: int,
    galleries: bool,
    progress: bool,
) -> MiningResult:
    channels, grids = runner.channels(dataset)
    image_size = tuple(model.preprocess.size)
    config = MiningConfig(
        model_sha256=model_sha256(model),
        model_name=model.name,
        data=str(Path(data).resolve()),
        data_kind=dataset.kind,
        data_fingerprint=dataset.fingerprint(),
        items=len(dataset),
        layers=tuple(tensors),
        channels=tuple(channels),
        top_k=top_k,
        score=score,
        shard_size=shard_size,
        preprocess=model.preprocess.to_dict(),
        image_size=image_size,  # type: ignore[arg-type]
    )
    ckpt = Checkpoint(out)
    ckpt.begin(config, restart, out)
    if restart:
        (out / "result.json").unlink(missing_ok=True)
    shards = dataset.shards(shard_size)
    done = ckpt.done()
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

        run_local(
            runner,
            dataset,
            todo,
            channels,
            ckpt,
            progress,
            sum(len(s) for s in shards if s.index in done),
        )
    elif todo:
        from .ray_engine import run_ray

        run_ray(
            _model_bytes(model), model.preprocess, str(Path(data).resolve()), tensors, channels, top_k, score,
            runner.batch_size, todo, ckpt, ray_address, ray_num_cpus, ray_actors, ray_cpus_per_actor,
            "cpu" if model.device == "auto" else model.device, progress,
        )  # fmt: skip
    log.info("onnxlens: mined %d shards in %.1f s.", len(todo), time.perf_counter() - t0)
    missing = {s.index for s in shards} - ckpt.done()
    if missing:
        raise ConfigurationError(
            f"shards {sorted(missing)[:10]} did not finish; re-run the same command to resume."
        )
    # Merge in shard order (any order gives the same states; this one is just deterministic I/O).
    total = {name: new_topk(c, top_k) for name, c in zip(tensors, channels, strict=True)}
    skipped: list[tuple[str, str]] = []
    for s in shards:
        states, sk = ckpt.load_shard(s.index, tensors)
        for name in tensors:
            total[name].merge(states[name])
        skipped += sk
    rf = runner.fields
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
        "data": str(data),
        "data_kind": dataset.kind,
        "items": len(dataset),
        "images_mined": len(dataset) - n_skipped,
        "skipped_count": n_skipped,
        "layers": meta_layers,
        "top_k": top_k,
        "score": score,
        "shard_size": shard_size,
        "image_size": list(image_size),
        "preprocess": model.preprocess.to_dict(),
        "boxes": "y0, x0, y1, x1 in model-input pixels; half-open; clipped at the borders",
        "positions": "row, col of the arg-max unit in the layer grid",
    }
    if galleries:
        write_galleries(
            out, dataset, model.preprocess.fit, arrays, {n: rf.field(n) for n in tensors}
        )
    write_index(out, meta, arrays, galleries)
    write_result(out, meta, arrays, skipped)
    if n_skipped:
        log.warning(
            "onnxlens: skipped %d unreadable items (listed in %s).", n_skipped, out / "skipped.json"
        )
    return load(out)
