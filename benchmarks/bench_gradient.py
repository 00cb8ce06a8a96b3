"""Input gradients of ResNet-50 and MobileNetV3-Large: onnxlens VJP graph vs the ORT forward
pass, PyTorch autograd and onnx-ad's reverse graph, same weights, inputs and thread count.

    python benchmarks/bench_gradient.py            # --threads 2 --batch 8 --size 224

Timings: all variants are set up and warmed up, then run round-robin --repeat times (50 ms pause
between runs, so no runtime's spinning threads eat into the next one) and each keeps its best:
a slow spell of a shared machine then hits every variant alike instead of whichever ran during
it. Peak memory: each variant in its own subprocess, peak RSS (VmHWM) after 3 runs minus the peak
once the model is loaded.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))


def _threads(n: int) -> None:
    os.environ["OMP_NUM_THREADS"] = str(n)
    import torch

    torch.set_num_threads(n)


def _net(name: str):
    import torch

    import zoo

    torch.manual_seed(0)
    net = zoo.randomize(zoo.ZOO[name]())
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def _export(name: str, size: int, folder: Path) -> Path:
    import zoo

    path = folder / f"{name}.onnx"
    if not path.exists():
        zoo.export(_net(name), path, (size, size), batch=2)
    return path


def _session(proto_or_bytes, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    data = (
        proto_or_bytes if isinstance(proto_or_bytes, bytes) else proto_or_bytes.SerializeToString()
    )
    return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])


def _round_robin(fns: dict, repeat: int) -> dict[str, float]:
    """Best time of each callable over `repeat` interleaved rounds."""
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeat):
        for name, fn in fns.items():
            time.sleep(0.05)
            t = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t)
    return best


def variants(name: str, path: Path, x: np.ndarray, c: np.ndarray, threads: int) -> dict:
    """name -> (setup-free run callable, result or None)."""
    import onnx
    import torch

    from onnxlens.autodiff import build_vjp

    proto = onnx.load(str(path))
    out = {}

    def ort_forward():
        s = _session(proto, threads)
        return lambda: s.run(["logits"], {"input": x})

    def onnxlens():
        from onnxlens.autodiff.cpu_graph import tune_for_cpu
        from onnxlens.runtime import make_session

        vg = build_vjp(proto, ["logits"], ["input"])
        # the session Model.gradient runs on the CPU: the graph tuned for this batch size
        s = make_session(tune_for_cpu(vg.proto, x.shape[0]), "cpu", threads)
        fetch = [vg.grad_outputs["input"]]
        feeds = {"input": x, vg.seed_inputs["logits"]: c}
        return lambda: s.run(fetch, feeds)[0]

    def onnxlens_function():
        # The public compiled object an optimisation loop holds: Model.vjp_function. Same graph
        # and session as above; what it adds per call is feed checks and a dict of results.
        import onnxlens

        f = onnxlens.Model(proto, device="cpu", threads=threads).vjp_function(
            "logits", batch=x.shape[0]
        )
        return lambda: f({"input": x}, {"logits": c}).gradients["input"]

    def torch_autograd():
        net = _net(name)
        xt = torch.from_numpy(x)
        ct = torch.from_numpy(c)

        def run():
            xi = xt.clone().requires_grad_(True)
            net(xi).backward(ct)
            return xi.grad.numpy()

        return run

    def onnx_ad():
        from onnx_ad import reverse

        static = onnx.ModelProto()
        static.CopyFrom(proto)
        for v in list(static.graph.input) + list(static.graph.output):
            v.type.tensor_type.shape.dim[0].Clear()
            v.type.tensor_type.shape.dim[0].dim_value = x.shape[0]
        adj = reverse(static)
        s = _session(adj, threads)
        names = [i.name for i in s.get_inputs()]
        seed = next(n for n in names if n != "input")
        shape = s.get_inputs()[names.index(seed)].shape
        cc = (
            c.reshape([d if isinstance(d, int) else 1 for d in shape])
            if len(shape) != c.ndim
            else c
        )
        outs = [o.name for o in s.get_outputs()]
        grad = next(o for o in outs if "input" in o and o != "input")
        return lambda: s.run([grad], {"input": x, seed: cc})[0].reshape(x.shape)

    out = {
        "ort_forward": ort_forward,
        "onnxlens": onnxlens,
        "onnxlens_function": onnxlens_function,
        "torch": torch_autograd,
        "onnx_ad": onnx_ad,
    }
    return out


def _hwm_kb() -> int:
    """Peak resident set (VmHWM) of this process image. Not ru_maxrss: that survives execve, so a
    child spawned by a big parent would start at the parent's peak."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def memory_child(name: str, path: str, variant: str, batch: int, size: int, threads: int) -> None:
    _threads(threads)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, 3, size, size)).astype(np.float32)
    c = rng.standard_normal((batch, 1000)).astype(np.float32)
    make = variants(name, Path(path), x, c, threads)[variant]
    import gc

    gc.collect()
    base = _hwm_kb()
    run = make()
    after_setup = _hwm_kb()
    for _ in range(3):
        run()
    peak = _hwm_kb()
    print(json.dumps({"setup_mb": (after_setup - base) / 1024, "peak_mb": (peak - base) / 1024}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--models", nargs="+", default=["resnet50", "mobilenet_v3_large"])
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument(
        "--memory-child", nargs=3, metavar=("MODEL", "PATH", "VARIANT"), help=argparse.SUPPRESS
    )
    args = ap.parse_args()
    if args.memory_child:
        memory_child(*args.memory_child, args.batch, args.size, args.threads)
        return
    _threads(args.threads)
    import onnxruntime as ort
    import torch

    folder = Path(tempfile.gettempdir()) / "onnxlens_bench_gradient"
    folder.mkdir(exist_ok=True)
    print(
        f"threads={args.threads} batch={args.batch} size={args.size} torch {torch.__version__} onnxruntime {ort.__version__}"
    )
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch, 3, args.size, args.size)).astype(np.float32)
    c = rng.standard_normal((args.batch, 1000)).astype(np.float32)
    for name in args.models:
        path = _export(name, args.size, folder)
        runs = variants(name, path, x, c, args.threads)
        fns, results = {}, {}
        for v, make in runs.items():
            try:
                t0 = time.perf_counter()
                fns[v] = make()
                setup = time.perf_counter() - t0
                results[v] = fns[v]()  # warm-up, and the result compared below
                print(f"  {name:20s} {v:17s} set up in {setup:.1f} s", flush=True)
            except Exception as exc:
                fns.pop(v, None)
                print(
                    f"  {name:20s} {v:17s} failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}",
                    flush=True,
                )
        times = _round_robin(fns, args.repeat)
        for v, t in times.items():
            print(f"  {name:20s} {v:17s} {t * 1000:9.1f} ms/batch (best of {args.repeat})")
        ref = results.get("torch")
        if ref is not None:
            for v in ("onnxlens", "onnxlens_function", "onnx_ad"):
                if v in results:
                    rel = np.abs(results[v] - ref).max() / np.abs(ref).max()
                    print(f"  {name:20s} {v:17s} max abs diff / max abs vs torch: {rel:.1e}")
        if "onnxlens" in times:
            print(
                f"  {name:20s} onnxlens / ORT forward = {times['onnxlens'] / times['ort_forward']:.2f}x ; "
                f"torch autograd / onnxlens = {times['torch'] / times['onnxlens']:.2f}x"
                + (
                    f" ; onnx-ad / onnxlens = {times['onnx_ad'] / times['onnxlens']:.2f}x"
                    if "onnx_ad" in times
                    else ""
                )
                + (
                    f" ; VJPFunction / bare session = {times['onnxlens_function'] / times['onnxlens']:.3f}x"
                    if "onnxlens_function" in times
                    else ""
                )
            )
        if not args.no_memory:
            for v in runs:
                cmd = [
                    sys.executable,
                    __file__,
                    "--memory-child",
                    name,
                    str(path),
                    v,
                    "--batch",
                    str(args.batch),
                    "--size",
                    str(args.size),
                    "--threads",
                    str(args.threads),
                ]
                r = subprocess.run(cmd, capture_output=True, text=True)
                if r.returncode == 0 and r.stdout.strip():
                    m = json.loads(r.stdout.strip().splitlines()[-1])
                    print(
                        f"  {name:20s} {v:17s} peak RSS increase {m['peak_mb']:7.0f} MB (session/graph setup {m['setup_mb']:.0f} MB)"
                    )
                else:
                    print(
                        f"  {name:20s} {v:17s} memory run failed: {(r.stderr or '').strip().splitlines()[-1:]}"
                    )


if __name__ == "__main__":
    main()
