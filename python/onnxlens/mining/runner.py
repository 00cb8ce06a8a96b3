"""One shard at a time: decode (threads), preprocess, run the reduced graph, update top-k states.

Shared by the local and Ray engines, so both compute the same per-shard states.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from ..data.images import DECODE_BUDGET
from ..errors import ImageError, ShapeError
from ..graph.receptive import ReceptiveFields, nchw_perms
from ..graph.reduce import add_channel_reductions, split_argmax
from ..model import Model
from ..runtime import GraphKey
from .config import MiningJob
from .dataset import Dataset, Shard
from .topk import PAYLOAD, TopKState, new_topk

DEFAULT_BATCH = 32


@dataclass
class Batch:
    ids: np.ndarray  # int64 (n,) dataset indices of the decoded images
    fitted: np.ndarray  # uint8 (n, H, W, 3)
    skipped: list[tuple[str, str]]  # (name, reason) of items that could not be read


def _decode(dataset: Dataset, i: int, fit: Callable[[np.ndarray], np.ndarray]) -> np.ndarray | str:
    try:
        # The decoded image counts against the shared decode budget until `fit` has shrunk it,
        # so the decode threads together stay within DECODE_BUDGET_BYTES.
        with DECODE_BUDGET.hold():
            return fit(dataset.read(i))
    except ImageError as exc:
        return str(exc)
    except Exception as exc:  # a decoder crash on one bad file must never end a long run
        return f"{type(exc).__name__}: {exc}"


def iter_batches(
    dataset: Dataset,
    indices: Sequence[int],
    batch_size: int,
    fit: Callable[[np.ndarray], np.ndarray],
    pool: cf.Executor | None = None,
) -> Iterator[Batch]:
    """Decoded, fitted batches of `indices` in order; the next batch decodes (OpenCV releases the
    GIL) while the caller runs the model on the current one."""
    chunks = [list(indices[s : s + batch_size]) for s in range(0, len(indices), batch_size)]
    own = pool is None
    pool = pool or cf.ThreadPoolExecutor(max(1, min(8, os.cpu_count() or 1)))
    try:
        pending = [pool.submit(_decode, dataset, i, fit) for i in chunks[0]] if chunks else []
        for b, chunk in enumerate(chunks):
            done = [f.result() for f in pending]
            pending = (
                [pool.submit(_decode, dataset, i, fit) for i in chunks[b + 1]]
                if b + 1 < len(chunks)
                else []
            )
            ids = [i for i, d in zip(chunk, done, strict=True) if not isinstance(d, str)]
            imgs = [d for d in done if not isinstance(d, str)]
            skipped = [
                (dataset.names[i], d)
                for i, d in zip(chunk, done, strict=True)
                if isinstance(d, str)
            ]
            fitted = np.stack(imgs) if imgs else np.zeros((0, 1, 1, 3), np.uint8)
            yield Batch(np.asarray(ids, np.int64), fitted, skipped)
    finally:
        if own:
            pool.shutdown(wait=False, cancel_futures=True)


class ShardRunner:
    """Holds one ORT session of the reduced graph and turns shards into top-k states."""

    def __init__(
        self,
        model: Model,
        job: MiningJob,
        decode_threads: int | None = None,
        backend: str = "auto",
    ) -> None:
        """`job.layers` must be tensor names (`Model.resolve`); `backend` picks the top-k state
        ("auto": the C++ one when built)."""
        self.model = model
        self.job = job
        self.layers = list(job.layers)
        self.top_k = job.top_k
        self.score = score = job.score
        self.backend = backend
        self.batch_size = model.input.batch or job.batch_size or DEFAULT_BATCH
        self.fields = ReceptiveFields(model.proto, model.input_name, model.layout)
        reduced, self.reductions = add_channel_reductions(
            model.proto, self.layers, score, perms=nchw_perms(self.fields, self.layers)
        )
        self._outputs = [n for r in self.reductions.values() for n in (r.score, r.argmax, r.shape)]
        self.session = model.session(
            GraphKey("mining", (score, tuple(self.layers))), lambda: reduced
        )
        self.pool = cf.ThreadPoolExecutor(decode_threads or max(1, min(8, os.cpu_count() or 1)))

    def new_states(self, channels: Sequence[int]) -> dict[str, TopKState]:
        return {
            name: new_topk(c, self.top_k, PAYLOAD, self.backend)
            for name, c in zip(self.layers, channels, strict=True)
        }

    def _run(self, x: np.ndarray) -> list[np.ndarray]:
        shapes = {r.shape for r in self.reductions.values()}  # per layer, not per image
        return self.model.run_batched(self.session, x, self._outputs, self.batch_size, whole=shapes)

    def forward(self, fitted: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per layer: (scores float32 (n, C), positions int32 (n, C, 2)) for fitted uint8 images."""
        outs = self._run(self.model.preprocess.to_tensor(fitted))
        res: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for j, name in enumerate(self.layers):
            scores, argmax, shape = outs[3 * j], outs[3 * j + 1], outs[3 * j + 2]
            res[name] = (np.ascontiguousarray(scores, np.float32), split_argmax(argmax, shape))
        return res

    def channels(self, dataset: Dataset) -> tuple[list[int], list[tuple[int, int]]]:
        """(channels per layer, layer grid (H, W)) from one forward pass on the first readable item."""
        first_error = ""
        for i in range(len(dataset)):
            img = _decode(dataset, i, self.model.preprocess.fit)
            if isinstance(img, str):
                first_error = first_error or img
                continue
            outs = self._run(self.model.preprocess.to_tensor(img[None]))
            shapes = [np.asarray(outs[3 * j + 2]).reshape(-1) for j in range(len(self.layers))]
            for name, s in zip(self.layers, shapes, strict=True):
                if len(s) not in (2, 4):  # the graph left the rank unknown; the run tells
                    raise ShapeError(
                        f"layer {name!r} has shape {tuple(int(d) for d in s)} at run time; mining "
                        "needs (N, C, H, W) feature maps or (N, C) vectors. Pick a Conv/pooling/"
                        "activation output (see `onnxlens inspect`)."
                    )
            chans = [int(s[1]) for s in shapes]
            grids = [(int(s[2]), int(s[3])) if len(s) == 4 else (1, 1) for s in shapes]
            return chans, grids
        raise ImageError(
            f"none of the {len(dataset)} items of DATA {str(dataset.source)!r} could be read, so there is "
            f"nothing to mine; the first failed with: {first_error} Check that DATA points at "
            "real images (corrupt, empty and unreadable files are skipped)."
        )

    def run_shard(
        self,
        dataset: Dataset,
        shard: Shard,
        channels: Sequence[int],
        on_batch: Callable[[int], None] | None = None,
    ) -> tuple[dict[str, TopKState], list[tuple[str, str]]]:
        states = self.new_states(channels)
        skipped: list[tuple[str, str]] = []
        for batch in iter_batches(
            dataset,
            range(shard.start, shard.stop),
            self.batch_size,
            self.model.preprocess.fit,
            self.pool,
        ):
            skipped += batch.skipped
            if len(batch.ids):
                for name, (scores, pos) in self.forward(batch.fitted).items():
                    states[name].update(scores, batch.ids, pos)
            if on_batch is not None:
                on_batch(len(batch.ids) + len(batch.skipped))
        return states, skipped

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
