"""Streaming per-channel top-k: onnxlens._core.TopK vs a numpy argpartition stream, same data.

The numpy side is what one writes without onnxlens: keep a (C, k) buffer, and per batch
concatenate it with the batch, argpartition to the k best per channel, gather. Both sides see the
same stream in the same batches, at the same thread count, and the final states are compared
(values must agree exactly; ids too, as the stream's values are tie-free).

Run: python benchmarks/bench_topk.py [--threads 2] [--images 20000]
     [--channels 512] [--k 16] [--batch 64]
"""

from __future__ import annotations

import argparse
import os
import time


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--images", type=int, default=20_000)
    p.add_argument("--channels", type=int, default=512)
    p.add_argument("--k", type=int, default=16)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeat", type=int, default=3)
    return p.parse_args()


ARGS = parse()
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(ARGS.threads)  # before numpy / _core load their thread pools

import numpy as np  # noqa: E402

from onnxlens._core import TopK  # noqa: E402


def numpy_stream(values: np.ndarray, ids: np.ndarray, k: int, batch: int):
    c = values.shape[1]
    best_v = np.full((c, 0), -np.inf, np.float32)
    best_i = np.zeros((c, 0), np.int64)
    for s in range(0, len(ids), batch):
        v = np.concatenate([best_v, values[s : s + batch].T], axis=1)
        i = np.concatenate(
            [best_i, np.broadcast_to(ids[s : s + batch], (c, len(ids[s : s + batch])))], axis=1
        )
        if v.shape[1] > k:
            part = np.argpartition(-v, k - 1, axis=1)[:, :k]
            v = np.take_along_axis(v, part, axis=1)
            i = np.take_along_axis(i, part, axis=1)
        best_v, best_i = v, i
    order = np.argsort(-best_v, axis=1, kind="stable")
    return np.take_along_axis(best_v, order, axis=1), np.take_along_axis(best_i, order, axis=1)


def onnxlens_stream(values: np.ndarray, ids: np.ndarray, k: int, batch: int) -> TopK:
    t = TopK(values.shape[1], k)
    for s in range(0, len(ids), batch):
        t.update(values[s : s + batch], ids[s : s + batch])
    return t


def best_time(fn, repeat: int):
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result


def main() -> None:
    rng = np.random.default_rng(0)
    n, c, k, b = ARGS.images, ARGS.channels, ARGS.k, ARGS.batch
    # ReLU-then-global-max-pool-like activations: non-negative, heavy right tail
    values = np.maximum(rng.standard_normal((n, c), dtype=np.float32), 0) ** 2
    values += rng.random((n, c), dtype=np.float32) * 1e-3  # tie-free, so ids are comparable
    ids = np.arange(n, dtype=np.int64)

    t_np, (ref_v, ref_i) = best_time(lambda: numpy_stream(values, ids, k, b), ARGS.repeat)
    t_ol, state = best_time(lambda: onnxlens_stream(values, ids, k, b), ARGS.repeat)
    assert np.array_equal(state.values(), ref_v), "values differ from the numpy stream"
    assert np.array_equal(state.ids(), ref_i), "ids differ from the numpy stream"

    print(f"numpy {np.__version__}; threads {ARGS.threads}")
    print(f"stream: {n} images x {c} channels, k={k}, batches of {b} ({-(-n // b)} updates)")
    print(f"numpy argpartition stream : {t_np * 1e3:9.1f} ms  ({n / t_np:10.0f} images/s)")
    print(f"onnxlens TopK             : {t_ol * 1e3:9.1f} ms  ({n / t_ol:10.0f} images/s)")
    print(f"speed-up                  : {t_np / t_ol:9.1f} x  (target >= 5x); states identical")


if __name__ == "__main__":
    main()
