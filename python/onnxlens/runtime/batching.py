"""Running a session over many samples: batch sizes under a memory bound, static-batch padding."""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence

import numpy as np
import onnxruntime as ort

from .session import detached


def batch_size_for(
    bytes_per_sample: int,
    memory_limit: int,
    static_batch: int | None = None,
    requested: int | None = None,
) -> int:
    """Samples per run: a static model batch wins, then `requested`, else the memory bound."""
    if static_batch is not None:
        return static_batch
    if requested:
        return int(requested)
    return max(1, int(memory_limit // max(1, bytes_per_sample)))


def bytes_per_sample(shape: Sequence[object] | None, fallback: int) -> int:
    """float32 bytes of one sample of a tensor of `shape` (batch first); `fallback` when unknown."""
    if shape and all(isinstance(d, int) and d > 0 for d in shape[1:]):
        return 4 * math.prod(int(d) for d in shape[1:])  # type: ignore[call-overload]
    return fallback


def session_batch(session: ort.InferenceSession, input_name: str) -> int | None:
    """The batch size a session's graph is pinned to (its input's first dim), or None."""
    dim0 = next(i.shape for i in session.get_inputs() if i.name == input_name)[0]
    return dim0 if isinstance(dim0, int) and dim0 > 0 else None


def run_batched(
    session: ort.InferenceSession,
    input_name: str,
    x: np.ndarray,
    output_names: Sequence[str],
    batch_size: int,
    extra: Mapping[str, np.ndarray] | None = None,
    progress: str | None = None,
    whole: Collection[str] = (),
    static_batch: int | None = None,
) -> list[np.ndarray]:
    """Run `session` over `x` (and per-sample `extra` feeds) in batches; concatenated outputs.

    A session with a static batch size (`static_batch`, else the one its graph is pinned to) gets
    exactly that many samples per run: the last batch is padded with copies of its first sample
    and the padding dropped from the results. Outputs named in `whole` are not per sample (a
    shape, say): the first run's value is returned as it is.
    """
    n = x.shape[0]
    static = static_batch if static_batch is not None else session_batch(session, input_name)
    chunks: list[list[np.ndarray]] = [[] for _ in output_names]
    starts = range(0, n, batch_size)
    iterator: Iterable[int] = starts
    if progress and len(starts) > 1:
        from tqdm.auto import tqdm

        iterator = tqdm(starts, desc=progress, unit="batch", leave=False)
    for s in iterator:
        e = min(n, s + batch_size)
        feeds = {input_name: x[s:e]}
        for k, v in (extra or {}).items():
            feeds[k] = v[s:e]
        real = e - s
        if static is not None and real != static:
            pad = static - real
            feeds = {
                k: np.concatenate([v, np.repeat(v[:1], pad, axis=0)]) for k, v in feeds.items()
            }
        outs = session.run(list(output_names), feeds)
        for c, name, o in zip(chunks, output_names, outs, strict=True):
            c.append(o[:real] if static is not None and name not in whole else o)
    return detached(
        [
            c[0] if len(c) == 1 or name in whole else np.concatenate(c)
            for name, c in zip(output_names, chunks, strict=True)
        ]
    )
