"""The atlas' cost per channel, measured on EfficientNet-Lite0 and projected to ResNet-50.

Measures, on this machine, for one layer of Lite0 over N real-photo crops:

- mining: one pass over DATA for the layer (all its channels at once), so its cost is per
  image, shared by every channel of every mined layer;
- visualisation: `steps` optimisation steps per channel (batched `--vis-batch` channels per
  compiled VJP run), so its cost is per channel and grows with the steps;
- the Ray engine's visualisation speed-up with 2 local workers against the local engine (the
  same batches; Ray's start-up is reported apart, it is paid once per run).

From those it projects the wall time of a full-layer atlas here, and of every channel of
ResNet-50 over 50,000 images on a cluster, with the arithmetic printed. ResNet-50's cost is
Lite0's scaled by their multiply-accumulate counts (4.1 vs 0.40 GMACs at 224x224; at the
visualisation size the ratio is the same: both are fully convolutional), and the cluster's
throughput by its cores (each Ray worker runs one ORT thread; per-core throughput as measured
here). Run it at a small scale (the defaults take about a minute on 2 cores):

    python benchmarks/bench_atlas.py --images 24 --channels 4 --steps 16
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

LAYER = "/_blocks.10/_swish_1/Clip_output_0"  # 480 channels at 14x14
LITE0_GMACS, RESNET50_GMACS = 0.40, 4.1
# Channels of every ReLU output of ResNet-50: stem 64; per bottleneck (w, w, 4w) with
# (blocks, w) = (3, 64), (4, 128), (6, 256), (3, 512).
RESNET50_CHANNELS = 64 + sum(b * 6 * w for b, w in ((3, 64), (4, 128), (6, 256), (3, 512)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=24, help="DATA images (photo crops)")
    ap.add_argument("--channels", type=int, default=4, help="channels visualised")
    ap.add_argument("--steps", type=int, default=16, help="visualisation steps")
    ap.add_argument("--vis-size", type=int, default=128)
    ap.add_argument("--full-steps", type=int, default=256, help="steps of the projected atlases")
    ap.add_argument("--nodes", type=int, default=16)
    ap.add_argument("--cores-per-node", type=int, default=16)
    ap.add_argument("--no-ray", action="store_true")
    args = ap.parse_args()

    import cv2

    from mining_data import photo_crops
    from onnxlens import Model
    from onnxlens.atlas import engines
    from onnxlens.demo import export_efficientnet_lite0
    from onnxlens.mining import RayOptions, mine

    model = Model(export_efficientnet_lite0())
    cores = os.cpu_count() or 1
    tmp = Path(tempfile.mkdtemp(prefix="bench_atlas-"))
    data = tmp / "data"
    data.mkdir()
    for i, img in enumerate(photo_crops(args.images, seed=3, min_side=96, max_side=320)):
        cv2.imwrite(str(data / f"{i:05d}.png"), img[:, :, ::-1])

    # Mining: warm the session once (on another folder), then time fresh runs without and with
    # the patch galleries (the galleries cost per channel, the pass per image).
    mine(model, data, [LAYER], tmp / "warm", top_k=8, galleries=False, progress=False)
    t, c = time.perf_counter(), time.process_time()
    res = mine(model, data, [LAYER], tmp / "mining", top_k=8, galleries=False, progress=False)
    t_mine, cpu_mine = time.perf_counter() - t, time.process_time() - c
    t = time.perf_counter()
    mine(model, data, [LAYER], tmp / "mining-g", top_k=8, progress=False)
    t_gal = max(0.0, time.perf_counter() - t - t_mine)
    c_layer = int(res[LAYER]["values"].shape[0])

    size = (args.vis_size, args.vis_size)
    synth = engines.Synthesis(args.steps, size)
    b = max(1, args.channels // 2)
    batches = [
        engines.Batch("channel", LAYER, i, tuple(range(s, min(s + b, args.channels))), i)
        for i, s in enumerate(range(0, args.channels, b))
    ]
    list(engines.run_local(model, batches[:1], engines.Synthesis(2, size)))  # compile once
    t, c = time.perf_counter(), time.process_time()
    local = list(engines.run_local(model, batches, synth))
    t_vis, cpu_vis = time.perf_counter() - t, time.process_time() - c

    # Connections: one VJP from the layer back to an earlier one per (channel, top image) pair.
    prev = "/_blocks.5/_swish_1/Clip_output_0"
    f = model.vjp_function([LAYER], wrt=[prev], keep=[prev], batch=16)
    x = np.repeat(model.prepare([str(next(data.iterdir()))])[0], 16, axis=0)
    cot = np.zeros((16, *model.activations(x[:1], [LAYER])[LAYER].shape[1:]), np.float32)
    cot[:, 0, 7, 7] = 1
    f({model.input_name: x}, {LAYER: cot})  # warm
    t = time.perf_counter()
    f({model.input_name: x}, {LAYER: cot})
    per_link = (time.perf_counter() - t) / 16

    per_image = t_mine / args.images
    per_channel_step = t_vis / (args.channels * args.steps)
    print(f"machine: {cores} cores; model {model.name}; layer {LAYER} ({c_layer} channels)")
    print(f"mining: {args.images} images in {t_mine:.2f} s wall ({cpu_mine:.2f} s CPU) = "
          f"{per_image * 1e3:.1f} ms/image for all {c_layer} channels at once; patch galleries "
          f"{t_gal:.2f} s = {t_gal / c_layer * 1e3:.1f} ms per channel")  # fmt: skip
    print(f"visualisation: {args.channels} channels x {args.steps} steps in {t_vis:.2f} s wall "
          f"({cpu_vis:.2f} s CPU) = {per_channel_step * 1e3:.1f} ms per channel-step at "
          f"{size[0]}x{size[1]}")  # fmt: skip
    print(f"connections: {per_link * 1e3:.1f} ms per (channel, image) VJP to {prev}; x 8 "
          f"images = {8 * per_link:.2f} s per channel")  # fmt: skip
    vis_channel = per_channel_step * args.full_steps
    mine_channel = t_mine / c_layer + t_gal / c_layer
    link_channel = 8 * per_link
    share = vis_channel / (vis_channel + mine_channel + link_channel)
    print(f"per channel of this atlas ({args.images} images, {args.full_steps} steps): mining "
          f"{mine_channel * 1e3:.1f} ms, connections {link_channel:.2f} s, visualisation "
          f"{vis_channel:.2f} s -> visualisation {share:.1%} of the cost")  # fmt: skip
    full = t_mine + t_gal + c_layer * (vis_channel + link_channel)
    print(f"full-layer atlas here ({c_layer} channels, {args.images} images, {args.full_steps} "
          f"steps): {t_mine + t_gal:.1f} s + {c_layer} x ({vis_channel:.2f} + {link_channel:.2f}) s "
          f"= {full / 60:.1f} min")  # fmt: skip

    if not args.no_ray:
        t = time.perf_counter()
        stop = engines.start_ray(RayOptions(num_cpus=2))
        t_start = time.perf_counter() - t
        try:
            list(engines.run_ray(model, batches[:2], engines.Synthesis(2, size), RayOptions(num_cpus=2)))  # warm workers  # fmt: skip
            t = time.perf_counter()
            remote = list(engines.run_ray(model, batches, synth, RayOptions(num_cpus=2)))
            t_ray = time.perf_counter() - t
        finally:
            stop()
        same = all(
            np.array_equal(a[1], r[1])
            for a, r in zip(local, sorted(remote, key=lambda x: x[0].index), strict=True)
        )
        print(f"Ray, 2 local workers (1 ORT thread each): {t_ray:.2f} s vs local {t_vis:.2f} s "
              f"({t_vis / t_ray:.2f}x; Ray start-up {t_start:.1f} s, once per run); same images: {same}")  # fmt: skip

    # ResNet-50, every channel, 50,000 images, on nodes x cores.
    scale = RESNET50_GMACS / LITE0_GMACS
    core_s_mine = per_image * cores * scale * 50_000  # mining is per image, all layers at once
    core_s_vis = per_channel_step * cores * scale * args.full_steps * RESNET50_CHANNELS
    total_cores = args.nodes * args.cores_per_node
    print("\nprojection: ResNet-50, every channel, 50,000 images, "
          f"{args.nodes} nodes x {args.cores_per_node} cores = {total_cores} cores")  # fmt: skip
    print(f"  cost ratio ResNet-50 / Lite0 = {RESNET50_GMACS} / {LITE0_GMACS} GMACs = {scale:.2f}")
    print(f"  mining: {per_image * 1e3:.1f} ms/image x {cores} cores x {scale:.2f} x 50,000 = "
          f"{core_s_mine / 3600:.1f} core-hours -> {core_s_mine / total_cores / 60:.1f} min")  # fmt: skip
    print(f"  visualisation: {per_channel_step * 1e3:.1f} ms x {cores} cores x {scale:.2f} x "
          f"{args.full_steps} steps x {RESNET50_CHANNELS} channels = {core_s_vis / 3600:.0f} "
          f"core-hours -> {core_s_vis / total_cores / 3600:.1f} h")  # fmt: skip
    core_s_link = per_link * cores * scale * 8 * RESNET50_CHANNELS
    print(f"  connections: {per_link * 1e3:.1f} ms x {cores} cores x {scale:.2f} x 8 images x "
          f"{RESNET50_CHANNELS} channels = {core_s_link / 3600:.0f} core-hours -> "
          f"{core_s_link / total_cores / 60:.1f} min (if spread like the visualisations; the "
          "atlas runs them on the driver today)")  # fmt: skip
    gal = t_gal / c_layer * RESNET50_CHANNELS  # written by the driver: one node, not spread
    print(f"  patch galleries (on the driver): {t_gal / c_layer * 1e3:.1f} ms x "
          f"{RESNET50_CHANNELS} channels = {gal / 60:.1f} min")  # fmt: skip
    total = (core_s_mine + core_s_vis + core_s_link) / total_cores + gal
    print(f"  total: {total / 3600:.1f} h on {total_cores} cores (assumes linear scaling over "
          "cores: batches and shards are independent)")  # fmt: skip


if __name__ == "__main__":
    main()
