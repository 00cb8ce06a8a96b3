"""Data gradient of a strided depthwise conv: ORT's ConvTranspose vs zero insertion + a stride-1
depthwise Conv (the two forms `autodiff/rules/conv.py` chooses between), one layer at a time.

    python benchmarks/bench_depthwise_grad.py       # --threads 2 --batch 8 --repeat 30

Each row builds both one-layer graphs from the same weights, checks they agree, and times them
round-robin (best of --repeat). The rule in conv.py (zero insertion for kernels of area >= 16 or
gradients of at most 400 pixels) comes from this table.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper


def _session(nodes, inits, c, h, threads):
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("g", TensorProto.FLOAT, ["N", c, h, h])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def layer(c: int, h: int, k: int, batch: int, threads: int, repeat: int) -> tuple[float, float]:
    """(ConvTranspose ms, zero insertion ms) for the gradient (batch, c, h, h) of a depthwise
    k x k conv with stride 2 and pads k // 2 whose input was 2h x 2h."""
    rng = np.random.default_rng(0)
    g = rng.standard_normal((batch, c, h, h)).astype(np.float32)
    w = rng.standard_normal((c, 1, k, k)).astype(np.float32)
    p, full = k // 2, 2 * h
    out_pad = full - ((h - 1) * 2 + k - 2 * p)
    convt = _session(
        [
            helper.make_node(
                "ConvTranspose",
                ["g", "w"],
                ["y"],
                group=c,
                strides=[2, 2],
                pads=[p] * 4,
                output_padding=[out_pad] * 2,
                kernel_shape=[k, k],
            )
        ],
        [numpy_helper.from_array(w, "w")],
        c,
        h,
        threads,
    )
    z_len = (h - 1) * 2 + 1
    begin, end = k - 1 - p, full + p - (h - 1) * 2 - 1
    zi = _session(
        [
            helper.make_node("Reshape", ["g", "s1"], ["a"]),
            helper.make_node(
                "ConvTranspose", ["a", "one"], ["b"], strides=[2, 2], kernel_shape=[1, 1]
            ),
            helper.make_node("Reshape", ["b", "s2"], ["z"]),
            helper.make_node(
                "Conv",
                ["z", "wf"],
                ["y"],
                group=c,
                pads=[begin, begin, end, end],
                kernel_shape=[k, k],
            ),
        ],
        [
            numpy_helper.from_array(np.array([-1, 1, h, h], np.int64), "s1"),
            numpy_helper.from_array(np.array([-1, c, z_len, z_len], np.int64), "s2"),
            numpy_helper.from_array(np.ones((1, 1, 1, 1), np.float32), "one"),
            numpy_helper.from_array(np.ascontiguousarray(w[:, :, ::-1, ::-1]), "wf"),
        ],
        c,
        h,
        threads,
    )
    a, b = convt.run(None, {"g": g})[0], zi.run(None, {"g": g})[0]
    assert a.shape == b.shape and np.abs(a - b).max() <= 1e-4 * np.abs(a).max(), "forms disagree"
    best = [float("inf"), float("inf")]
    for _ in range(repeat):
        for i, s in enumerate((convt, zi)):
            t = time.perf_counter()
            s.run(None, {"g": g})
            best[i] = min(best[i], time.perf_counter() - t)
    return best[0] * 1000, best[1] * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=30)
    args = ap.parse_args()
    print(
        f"onnxruntime {ort.__version__}, onnx {onnx.__version__}, threads={args.threads}, batch={args.batch}"
    )
    print("channels  grad HxW  kernel  ConvTranspose ms  zero insertion ms  speed-up")
    for c in (32, 96, 144, 576):
        for h in (56, 28, 14, 7):
            for k in (3, 5):
                t_ct, t_zi = layer(c, h, k, args.batch, args.threads, args.repeat)
                print(
                    f"{c:8d}  {h:3d}x{h:<4d}  {k}x{k}     {t_ct:12.2f}  {t_zi:17.2f}  {t_ct / t_zi:7.2f}x"
                )


if __name__ == "__main__":
    main()
