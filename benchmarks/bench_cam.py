"""Grad-CAM and Score-CAM throughput: onnxlens on the exported ONNX model vs pytorch-grad-cam on
the same torch weights (tests/zoo.py ResNet-50 and MobileNetV3-Large), same inputs, same thread
count, one process; plus the bare ONNX Runtime forward pass as the floor.

    python benchmarks/bench_cam.py [--threads 2] [--batch 16] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "methods")]


def best(fn, repeats: int, warm: bool = True) -> float:
    if warm:
        fn()  # warm-up (session and VJP graph build)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--score-batch", type=int, default=1, help="images for the Score-CAM comparison"
    )
    ap.add_argument("--models", nargs="+", default=["resnet50", "mobilenet_v3_large"])
    args = ap.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    import nets

    import onnxlens
    from zoo import ZOO, export, randomize

    pgc = nets.import_pytorch_grad_cam()

    x = nets.images(args.batch, (224, 224), seed=0)
    tmp = Path(tempfile.mkdtemp())
    for name in args.models:
        torch.manual_seed(0)
        net = randomize(ZOO[name]())
        path = tmp / f"{name}.onnx"
        export(net, path)
        model = onnxlens.Model(path, threads=args.threads)
        layer_t = onnxlens.GradCAM(model).resolved_layers()[0]
        layer_m = (
            net.layer4[-1]
            if name.startswith("resnet")
            else net.features[-1]
            if hasattr(net, "features")
            else None
        )
        if layer_m is None:
            layer_m = [m for m in net.modules() if isinstance(m, torch.nn.Module)][-4]
        sess = model.plain_session()
        bare = best(
            lambda model=model, sess=sess: sess.run(None, {model.input_name: x}), args.repeats
        )
        ours = best(
            lambda model=model: onnxlens.GradCAM(model, progress=False).attribute(x), args.repeats
        )
        xt = torch.from_numpy(x)

        def theirs(net=net, layer_m=layer_m, xt=xt):
            with pgc.GradCAM(model=net, target_layers=[layer_m]) as cam:
                cam(input_tensor=xt, targets=None)

        ref = best(theirs, args.repeats)
        a = onnxlens.GradCAM(model, progress=False).attribute(x).heatmap
        with pgc.GradCAM(model=net, target_layers=[layer_m]) as cam:
            b = cam(input_tensor=xt, targets=None)
        c = min(nets.corr(a[i], b[i]) for i in range(len(a)) if np.ptp(b[i]) > 0)
        print(f"\n{name} (layer {layer_t}), batch {args.batch}, {args.threads} threads")
        print(f"  bare ORT forward         {bare * 1e3:8.1f} ms  {args.batch / bare:7.1f} img/s")
        print(
            f"  onnxlens GradCAM         {ours * 1e3:8.1f} ms  {args.batch / ours:7.1f} img/s  ({ours / bare:.2f}x the forward)"
        )
        print(
            f"  pytorch-grad-cam GradCAM {ref * 1e3:8.1f} ms  {args.batch / ref:7.1f} img/s  -> onnxlens {ref / ours:.1f}x faster"
        )
        print(f"  min correlation of the maps: {c:.4f}")
        xs = x[: args.score_batch]
        ours_s = best(
            lambda model=model, xs=xs: onnxlens.ScoreCAM(model, progress=False).attribute(xs), 1
        )

        def theirs_s(net=net, layer_m=layer_m, xs=xs):
            with pgc.ScoreCAM(model=net, target_layers=[layer_m]) as cam:
                cam.batch_size = 16
                import contextlib
                import io

                with contextlib.redirect_stderr(io.StringIO()):
                    cam(input_tensor=torch.from_numpy(xs), targets=None)

        ref_s = best(theirs_s, 1, warm=False)
        print(
            f"  Score-CAM ({args.score_batch} image(s)): onnxlens {ours_s:.2f} s, pytorch-grad-cam {ref_s:.2f} s -> {ref_s / ours_s:.1f}x"
        )


if __name__ == "__main__":
    main()
