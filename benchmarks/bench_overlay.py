"""onnxlens.render.overlay vs the OpenCV per-image loop users write, at the same thread count.

    OMP_NUM_THREADS is set here (before onnxlens is imported) and cv2.setNumThreads() to the
    same value, so both sides get the same cores.

Run: python benchmarks/bench_overlay.py [--threads 2] [--n 256] [--repeat 7]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--n", type=int, default=256, help="images and maps per call")
    p.add_argument("--size", type=int, default=224, help="image side H = W")
    p.add_argument("--map", type=int, default=7, help="map side h = w")
    p.add_argument("--repeat", type=int, default=11)
    return p.parse_args()


ARGS = parse()
os.environ["OMP_NUM_THREADS"] = str(ARGS.threads)  # must precede the first import of _core

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from skimage import data as skdata  # noqa: E402

from onnxlens import _core  # noqa: E402
from onnxlens.render import overlay  # noqa: E402


def timed(fn, repeat: int) -> float:
    fn()  # warm-up: page faults, thread pools, lazy init
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)  # least disturbed run: the machine is shared


def photos(n: int, size: int) -> np.ndarray:
    base = [skdata.chelsea(), skdata.astronaut(), skdata.coffee()]
    small = [cv2.resize(p, (size, size), interpolation=cv2.INTER_AREA) for p in base]
    return np.ascontiguousarray(np.stack([small[i % len(small)] for i in range(n)]))


def main() -> None:
    cv2.setNumThreads(ARGS.threads)
    n, size = ARGS.n, ARGS.size
    rng = np.random.default_rng(0)
    images = photos(n, size)  # RGB uint8 (N, H, W, 3)
    maps = rng.random((n, ARGS.map, ARGS.map), dtype=np.float32)
    images_bgr = np.ascontiguousarray(images[..., ::-1])  # the OpenCV side works in BGR
    out_cv = np.empty_like(images_bgr)

    out_ol = np.empty_like(images)

    def run_onnxlens() -> None:
        overlay(images, maps, colormap="jet", alpha=0.5)

    def run_onnxlens_out() -> None:  # same preallocated output as the OpenCV loop gets
        overlay(images, maps, colormap="jet", alpha=0.5, out=out_ol)

    def run_opencv() -> None:
        for i in range(n):
            up = cv2.resize(maps[i], (size, size), interpolation=cv2.INTER_LINEAR)
            u8 = cv2.normalize(up, None, 0, 255, cv2.NORM_MINMAX, cv2.CV_8U)
            colour = cv2.applyColorMap(u8, cv2.COLORMAP_JET)
            cv2.addWeighted(images_bgr[i], 0.5, colour, 0.5, 0.0, dst=out_cv[i])

    t_ol = timed(run_onnxlens, ARGS.repeat)
    t_olo = timed(run_onnxlens_out, ARGS.repeat)
    t_cv = timed(run_opencv, ARGS.repeat)
    # same result up to OpenCV's own conventions (BGR order, its jet table, fixed-point blend)
    run_opencv()
    run_onnxlens_out()
    mean_abs = np.abs(out_cv[..., ::-1].astype(np.int16) - out_ol).mean()

    # Memory-bandwidth ceiling on this machine, same buffer size: np.copyto on one thread and
    # on `threads` threads (numpy drops the GIL inside the copy loop).
    src = np.empty(images.nbytes, np.uint8)
    src[:] = 1
    dst = np.empty_like(src)
    dst[:] = 0
    t_copy1 = timed(lambda: np.copyto(dst, src), ARGS.repeat)
    parts = np.array_split(np.arange(src.size), ARGS.threads)
    bounds = [(p[0], p[-1] + 1) for p in parts]
    with ThreadPoolExecutor(ARGS.threads) as pool:

        def copy_mt() -> None:
            list(pool.map(lambda b: np.copyto(dst[b[0] : b[1]], src[b[0] : b[1]]), bounds))

        t_copyn = timed(copy_mt, ARGS.repeat)
    copy_bw = max(2 * src.nbytes / t_copy1, 2 * src.nbytes / t_copyn)  # read + write bytes/s
    # overlay reads the images and maps and writes the output once
    touched = images.nbytes + maps.nbytes + images.nbytes
    ol_bw = touched / t_olo

    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, OpenCV {cv2.__version__}")
    print(
        f"threads: OMP {_core.max_threads()} (onnxlens), cv2 {cv2.getNumThreads()}; "
        f"{n} maps {ARGS.map}x{ARGS.map} -> {size}x{size} over {n} RGB photos"
    )
    print(f"onnxlens overlay          : {t_ol * 1e3:8.2f} ms  ({n / t_ol:8.0f} images/s)")
    print(f"onnxlens overlay(out=)    : {t_olo * 1e3:8.2f} ms  ({n / t_olo:8.0f} images/s)")
    print(f"OpenCV loop (dst=)        : {t_cv * 1e3:8.2f} ms  ({n / t_cv:8.0f} images/s)")
    print(
        f"speed-up                  : {t_cv / t_olo:8.2f} x with out=, {t_cv / t_ol:.2f} x "
        "allocating a new output per call (target >= 3x)"
    )
    print(f"mean |onnxlens - OpenCV|  : {mean_abs:8.2f} (uint8 levels; colormap tables differ)")
    print(
        f"copy bandwidth (np.copyto): {2 * src.nbytes / t_copy1 / 1e9:8.2f} GB/s 1 thread, "
        f"{2 * src.nbytes / t_copyn / 1e9:.2f} GB/s {ARGS.threads} threads (read+write)"
    )
    print(
        f"overlay(out=) touches     : {touched / 1e6:8.1f} MB -> {ol_bw / 1e9:.2f} GB/s "
        f"= {100 * ol_bw / copy_bw:.0f}% of the best copy bandwidth"
    )


if __name__ == "__main__":
    main()
