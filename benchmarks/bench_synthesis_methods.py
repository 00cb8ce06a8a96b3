"""Deep dream, inversion, texture, style transfer and fooling per step: each onnxlens method
against the bare compiled VJP of its own objective, and against the same loop written in PyTorch
autograd on the same EfficientNet-Lite0 weights (frozen), same thread count; and a style
transfer at 512x512 end to end.

    python benchmarks/bench_synthesis_methods.py     # --threads 2 --size 128 --steps 20 --repeat 3

Method. A step is one evaluation of the method's compiled objective (`ObjectiveFunction`, one
ORT run returning the values and the input gradient): an Adam or PGD step, an L-BFGS evaluation
(line-search trials included), one dream step (one batch of tiles). While a method runs, a probe
wraps `ObjectiveFunction.__call__` (counts the calls, times each), `LossFunction.__init__` and
`ObjectiveValues.__init__` (times the compiles). What a method does between evaluations counts
in its steps: recorded curves (forward runs), the dream's octave changes and their values. The method's time per step is the time from the start of its first
evaluation to the start of its last, less the compiles in between, over the evaluations between
(every interval is one full step: the ORT run and everything the method does around it; set-up
and the final metrics are outside). The bare VJP is the same compiled function instances called
in a plain loop on the inputs the method last gave them (weighted by the method's calls per
instance). PyTorch: the same loop (same batch, size, layers, losses, optimiser) with its
objective evaluations (forward + backward) counted and the whole loop timed. The three are
measured interleaved, `--repeat` rounds, best of each. The layers are block outputs
(`/_blocks.K/Add_output_0` in the ONNX file, `net._blocks[K]` in PyTorch).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

import numpy as np

from bench_visualize import _lite0  # the same frozen Lite0 weights (run from benchmarks/)

BLOCKS = (2, 4, 7, 10, 13)


def _onnx(k: int) -> str:
    return f"/_blocks.{k}/Add_output_0"


class Probe:
    """Counts and times the compiled objective's calls (and the compiles) while active."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, np.ndarray, float, float]] = []  # (fn, x, start, end)
        self.compiles: list[tuple[float, float]] = []

    @contextmanager
    def watching(self):
        from onnxlens.synthesis import common, compiled

        call0, init0 = compiled.ObjectiveFunction.__call__, common.LossFunction.__init__
        vinit0 = common.ObjectiveValues.__init__
        probe = self

        def call(fn, x):
            t0 = time.perf_counter()
            out = call0(fn, x)
            probe.calls.append((fn, x, t0, time.perf_counter()))
            return out

        def init(lf, *a, **k):
            t0 = time.perf_counter()
            init0(lf, *a, **k)
            probe.compiles.append((t0, time.perf_counter()))

        def vinit(ov, *a, **k):
            t0 = time.perf_counter()
            vinit0(ov, *a, **k)
            probe.compiles.append((t0, time.perf_counter()))

        compiled.ObjectiveFunction.__call__ = call  # type: ignore[method-assign]
        common.LossFunction.__init__ = init  # type: ignore[method-assign]
        common.ObjectiveValues.__init__ = vinit  # type: ignore[method-assign]
        try:
            yield self
        finally:
            compiled.ObjectiveFunction.__call__ = call0  # type: ignore[method-assign]
            common.LossFunction.__init__ = init0  # type: ignore[method-assign]
            common.ObjectiveValues.__init__ = vinit0  # type: ignore[method-assign]

    def per_step(self) -> tuple[float, float, int]:
        """(seconds per step, seconds inside ORT per call, steps timed)."""
        starts = [c[2] for c in self.calls]
        a, b = starts[0], starts[-1]
        inside = sum(min(e, b) - max(s, a) for s, e in self.compiles if e > a and s < b)
        n = len(starts) - 1
        ort = sum(e - s for _, _, s, e in self.calls[:-1]) / n
        return (b - a - max(inside, 0.0)) / n, ort, n

    def bare(self, rounds: int = 1) -> float:
        """Seconds per call of the same compiled functions in a plain loop on their last
        inputs, weighted by how often the method called each."""
        last: dict[int, tuple[Any, np.ndarray, int]] = {}
        for fn, x, _, _ in self.calls[1:]:
            k = last.get(id(fn), (fn, x, 0))[2]
            last[id(fn)] = (fn, x, k + 1)
        total, count = 0.0, 0
        for fn, x, k in last.values():
            reps = max(3, min(k, 12)) * rounds
            fn(x)  # warm
            t0 = time.perf_counter()
            for _ in range(reps):
                fn(x)
            total += (time.perf_counter() - t0) / reps * k
            count += k
        return total / count


class TorchFeatures:
    """Block outputs of the PyTorch network by forward hooks (the tutorial's way)."""

    def __init__(self, net, torch, spec) -> None:
        self.net, self.torch = net, torch
        self.feats: dict[int, object] = {}
        for k in BLOCKS:
            net._blocks[k].register_forward_hook(
                lambda _m, _i, out, k=k: self.feats.__setitem__(k, out)
            )
        self.mean = torch.tensor(spec.mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(spec.std, dtype=torch.float32).view(1, 3, 1, 1)
        self.scale = float(spec.scale)
        self.evals = 0

    def __call__(self, img):
        self.evals += 1
        logits = self.net((img * 255 * self.scale - self.mean) / self.std)
        return logits, dict(self.feats)


def _torch_per_step(tf: TorchFeatures, loop: Callable[[], None]) -> float:
    tf.evals = 0
    t0 = time.perf_counter()
    loop()
    return (time.perf_counter() - t0) / max(tf.evals, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--fool-batch", type=int, default=8)
    ap.add_argument("--dream-size", type=int, default=448)
    ap.add_argument("--e2e-size", type=int, default=512)
    ap.add_argument("--e2e-steps", type=int, default=20)
    ap.add_argument("--only", nargs="*", default=None, help="row name prefixes to run")
    args = ap.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    net, torch = _lite0()
    torch.set_num_threads(args.threads)
    import skimage.data as sk

    import onnxlens
    from onnxlens import synthesis as S
    from onnxlens.demo import export_efficientnet_lite0
    from onnxlens.synthesis.common import unit_images
    from onnxlens.synthesis.param import COLOR_DECORRELATION

    model = onnxlens.Model(export_efficientnet_lite0(), device="cpu", threads=args.threads)
    size = (args.size, args.size)
    n = args.steps
    tf = TorchFeatures(net, torch, model.preprocess)
    content, style = sk.chelsea(), sk.coffee()
    print(
        f"EfficientNet-Lite0, {args.threads} threads, torch {torch.__version__}, load average "
        f"{os.getloadavg()[0]:.2f}; ms per step (one objective evaluation), best of "
        f"{args.repeat} interleaved rounds"
    )
    rows: list[tuple[str, Callable[[], None], Callable[[], None]]] = []

    # -- inversion: 3 depths in one batch --------------------------------------------------
    layers = [_onnx(2), _onnx(7), _onnx(13)]
    target = unit_images(model, content, size)
    with torch.no_grad():
        _, f0 = tf(torch.tensor(target))
    t_phi = [f0[k] for k in (2, 7, 13)]
    t_norm = [float((p**2).sum()) for p in t_phi]
    mix = torch.tensor(COLOR_DECORRELATION)

    def ours_inv() -> None:
        S.invert(model, content, layers, size=size, steps=n, progress=False)

    def torch_inv() -> None:
        p = (0.5 * torch.randn(3, 3, *size)).requires_grad_(True)
        opt = torch.optim.Adam([p], lr=0.05)
        for _ in range(n):
            opt.zero_grad()
            x = torch.sigmoid(torch.einsum("ij,njhw->nihw", mix, p))
            _, fs = tf(x)
            total = 0
            for i, (k, phi, nm) in enumerate(zip((2, 7, 13), t_phi, t_norm, strict=True)):
                total = total + ((fs[k][i] - phi[0]) ** 2).sum() / nm
            dx = x[..., :, 1:] - x[..., :, :-1]
            dy = x[..., 1:, :] - x[..., :-1, :]
            total = total + 0.5 * ((dx**2).mean() + (dy**2).mean()) + ((x - 0.5).abs() ** 6).mean()
            total.backward()
            opt.step()

    rows.append((f"invert (3 depths, batch 3, {args.size}px)", ours_inv, torch_inv))

    # -- texture and style transfer: 5 Gram layers (+ content), 1 image, L-BFGS ---------------
    st_layers = [_onnx(k) for k in BLOCKS]
    cimg, simg = unit_images(model, content, size), unit_images(model, style, size)
    with torch.no_grad():
        _, fsty = tf(torch.tensor(simg))
        _, fcon = tf(torch.tensor(cimg))

    def gram(t):
        a, b, c, d = t.size()
        m = t.view(a * b, c * d)
        return torch.mm(m, m.t()).div(a * b * c * d)

    t_grams = {k: gram(fsty[k]) for k in BLOCKS}

    def torch_lbfgs(x0: np.ndarray, with_content: bool) -> None:
        x = torch.tensor(x0).clone().requires_grad_(True)
        opt = torch.optim.LBFGS([x], max_iter=n, max_eval=n, history_size=10)  # as ours

        def closure():
            with torch.no_grad():
                x.clamp_(0, 1)
            opt.zero_grad()
            _, fs = tf(x)
            total = torch.nn.functional.mse_loss(fs[10], fcon[10]) if with_content else 0
            for k in BLOCKS:
                total = total + 1e3 / len(BLOCKS) * torch.nn.functional.mse_loss(
                    gram(fs[k]), t_grams[k]
                )
            total.backward()
            return total

        opt.step(closure)

    def ours_tex() -> None:
        S.texture(model, style, size=size, layers=st_layers, steps=n, progress=False)

    noise = np.random.default_rng(0).random((1, 3, *size)).astype(np.float32)
    rows.append(
        (f"texture (L-BFGS, 1 image, {args.size}px)", ours_tex, lambda: torch_lbfgs(noise, False))
    )

    def ours_st() -> None:
        S.style_transfer(
            model, content, style, size=size, content_layer=_onnx(10), style_layers=st_layers,
            steps=n, progress=False,
        )  # fmt: skip

    rows.append(
        (f"style (L-BFGS, 1 image, {args.size}px)", ours_st, lambda: torch_lbfgs(cimg, True))
    )

    # -- fooling: targeted PGD on a batch ------------------------------------------------------
    nb = args.fool_batch
    photos = ([content, style, sk.astronaut(), sk.rocket()] * (nb // 4 + 1))[:nb]
    x0 = unit_images(model, photos, size)
    targets = [int(t) for t in np.random.default_rng(1).integers(0, 1000, nb)]
    tt = torch.tensor(targets)

    def ours_fool() -> None:
        S.fool(model, photos, target=targets, steps=n, size=size, progress=False)

    def torch_fool() -> None:
        xt0 = torch.tensor(x0)
        x = xt0.clone()
        eps, alpha = 4 / 255, 2.5 * 4 / 255 / n
        for _ in range(n):
            x.requires_grad_(True)
            logits, _ = tf(x)
            lossv = torch.nn.functional.cross_entropy(logits, tt, reduction="sum")
            (g,) = torch.autograd.grad(lossv, x)
            with torch.no_grad():
                x = torch.min(torch.max(x - alpha * g.sign(), xt0 - eps), xt0 + eps).clamp(0, 1)

    rows.append((f"fool (targeted PGD, batch {nb}, {args.size}px)", ours_fool, torch_fool))

    # -- deep dream: 3 octaves (448, 320, 229 px), 224px tiles, 4 per run -----------------------
    ds = args.dream_size
    d_img = unit_images(model, content, (ds, ds))

    def ours_dream() -> None:
        S.dream(model, d_img, layer=_onnx(4), octaves=3, steps=n, progress=False)

    def torch_dream() -> None:  # the notebook's loop on whole images (same pixels and FLOPs)
        interp = torch.nn.functional.interpolate
        base = torch.tensor(d_img)
        shapes = [(ds, ds)]
        for _ in range(2):
            shapes.append(tuple(max(1, round(v / 1.4)) for v in shapes[-1]))
        bases = [base] + [interp(base, size=sh, mode="bilinear") for sh in shapes[1:]]
        detail = torch.zeros_like(bases[-1])
        rng = np.random.default_rng(0)
        for ob in reversed(bases):
            if detail.shape != ob.shape:
                detail = interp(detail, size=tuple(ob.shape[2:]), mode="bilinear")
            x = (ob + detail).clamp(0, 1)
            for _ in range(n):
                oy, ox = rng.integers(-32, 33, 2)
                xr = torch.roll(x, (int(oy), int(ox)), (2, 3)).requires_grad_(True)
                _, fs = tf(xr)
                (g,) = torch.autograd.grad((fs[4] ** 2).mean(), xr)
                g = torch.roll(g, (-int(oy), -int(ox)), (2, 3))
                x = (x + 1.5 / 255 / (g.abs().mean() + 1e-12) * g).clamp(0, 1).detach()
            detail = x - ob

    rows.append((f"dream ({ds}px, 3 octaves, 4 tiles/run)", ours_dream, torch_dream))

    if args.only:
        rows = [r for r in rows if any(r[0].startswith(p) for p in args.only)]
    for name, ours, ref in rows:
        best = {"ours": np.inf, "ort": np.inf, "bare": np.inf, "torch": np.inf}
        for _ in range(args.repeat):
            probe = Probe()
            with probe.watching():
                ours()
            step, ort, evals = probe.per_step()
            best["ours"] = min(best["ours"], step)
            best["ort"] = min(best["ort"], ort)
            best["bare"] = min(best["bare"], probe.bare())
            best["torch"] = min(best["torch"], _torch_per_step(tf, ref))
        print(
            f"  {name:42s} {evals:3d} evals  bare VJP {best['bare'] * 1e3:7.1f}  onnxlens "
            f"{best['ours'] * 1e3:7.1f} ({best['ours'] / best['bare']:.2f}x bare; in ORT "
            f"{best['ort'] * 1e3:.1f})  torch {best['torch'] * 1e3:7.1f} -> "
            f"{best['torch'] / best['ours']:.2f}x faster",
            flush=True,
        )

    # -- style transfer end to end at 512x512 ---------------------------------------------------
    if args.e2e_steps > 0:
        e = (args.e2e_size, args.e2e_size)
        probe = Probe()
        t0 = time.perf_counter()
        with probe.watching():
            res = S.style_transfer(
                model, content, style, size=e, steps=args.e2e_steps, progress=False
            )
        t1 = time.perf_counter()
        step, ort, evals = probe.per_step()
        bare = probe.bare()
        print(
            f"  style transfer {e[0]}x{e[1]} end to end (default layers, L-BFGS, "
            f"{args.e2e_steps} evaluations): {t1 - t0:.1f} s, of which set-up "
            f"{sum(b - a for a, b in probe.compiles):.1f} s; {step * 1e3:.0f} ms per step = "
            f"{step / bare:.2f}x its bare VJP ({bare * 1e3:.0f} ms; in ORT {ort * 1e3:.0f}); content "
            f"{res.metrics['content'][0]:.3f}, style {res.metrics['style'][0]:.4f}"
        )


if __name__ == "__main__":
    main()
