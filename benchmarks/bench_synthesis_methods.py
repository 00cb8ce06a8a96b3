"""Dream, inversion, style transfer and fooling per step: each onnxlens method against the bare
compiled VJP of its own objective (same batch and size), and against the same loop written in
PyTorch autograd on the same EfficientNet-Lite0 weights (frozen), same thread count; and a style
transfer at 512x512 end to end.

    python benchmarks/bench_synthesis_methods.py     # --threads 2 --size 128 --steps 6

Per-step times are differences of the fastest of --repeat runs with `steps` and with `2 * steps`
steps (set-up, graph and session build are not counted). The layers are
block outputs (`/_blocks.K/Add_output_0` in the ONNX file, `net._blocks[K]` in PyTorch), so both
sides compute the same losses.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from bench_visualize import _lite0  # the same frozen Lite0 weights (run from benchmarks/)

BLOCKS = (2, 4, 7, 10, 13)


def _onnx(k: int) -> str:
    return f"/_blocks.{k}/Add_output_0"


def _best_pair(fn, steps: int, repeat: int) -> float:
    """Per-step time from the best (fastest) of `repeat` runs of `steps` and of `2 * steps`
    steps: (t(2n) - t(n)) / n, so set-up is not counted."""
    fn(1)  # warm-up
    t1, t2 = float("inf"), float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(steps)
        t1 = min(t1, time.perf_counter() - t0)
        t0 = time.perf_counter()
        fn(2 * steps)
        t2 = min(t2, time.perf_counter() - t0)
    return max(t2 - t1, 1e-9) / steps


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

    def __call__(self, img):
        logits = self.net((img * 255 * self.scale - self.mean) / self.std)
        return logits, dict(self.feats)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--fool-batch", type=int, default=8)
    ap.add_argument("--e2e-size", type=int, default=512)
    ap.add_argument("--e2e-steps", type=int, default=20)
    args = ap.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    net, torch = _lite0()
    torch.set_num_threads(args.threads)
    import skimage.data as sk

    import onnxlens
    from onnxlens import synthesis as S
    from onnxlens.demo import export_efficientnet_lite0
    from onnxlens.synthesis.common import LossFunction, activations_of, unit_images

    model = onnxlens.Model(export_efficientnet_lite0(), device="cpu", threads=args.threads)
    size = (args.size, args.size)
    tf = TorchFeatures(net, torch, model.preprocess)
    content, style = sk.chelsea(), sk.coffee()
    print(
        f"EfficientNet-Lite0 at {args.size}x{args.size}, {args.threads} threads, torch "
        f"{torch.__version__}; ms per step (best of {args.repeat})"
    )
    rows = []

    # -- inversion: 3 depths in one batch --------------------------------------------------
    layers = [_onnx(2), _onnx(7), _onnx(13)]
    target = unit_images(model, content, size)
    phis = activations_of(model, target, layers)
    loss = S.stack_targets([S.feature_loss(la, phis[la][0]) for la in layers])
    f = LossFunction(model, loss, 3, size)
    img = np.random.default_rng(0).random((3, 3, *size)).astype(np.float32)

    def bare_inv(n: int) -> None:
        for _ in range(n):
            f(img)

    def ours_inv(n: int) -> None:
        S.invert(model, content, layers, size=size, steps=n, progress=False)

    with torch.no_grad():
        _, f0 = tf(torch.tensor(target))
    t_phi = [f0[k] for k in (2, 7, 13)]

    def torch_inv(n: int) -> None:
        p = torch.zeros(3, 3, *size, requires_grad=True)
        opt = torch.optim.Adam([p], lr=0.05)
        for _ in range(n):
            opt.zero_grad()
            x = torch.sigmoid(p)
            _, fs = tf(x)
            total = 0
            for i, (k, phi) in enumerate(zip((2, 7, 13), t_phi, strict=True)):
                total = total + ((fs[k][i] - phi[0]) ** 2).sum() / (phi**2).sum()
            dx = x[..., :, 1:] - x[..., :, :-1]
            dy = x[..., 1:, :] - x[..., :-1, :]
            total = total + 0.5 * ((dx**2).mean() + (dy**2).mean()) + ((x - 0.5).abs() ** 6).mean()
            total.backward()
            opt.step()

    rows.append(("invert (3 depths, batch 3)", bare_inv, ours_inv, torch_inv))

    # -- style transfer: content + 5 Gram layers, 1 image ------------------------------------
    st_layers = [_onnx(k) for k in BLOCKS]
    cimg, simg = unit_images(model, content, size), unit_images(model, style, size)
    sa = activations_of(model, simg, st_layers)
    grams = [S.gram_matrix(sa[la])[0] for la in st_layers]
    phi_c = activations_of(model, cimg, [_onnx(10)])[_onnx(10)][0]
    st_loss = S.content_loss(_onnx(10), phi_c) + 1e3 * S.style_loss(st_layers, grams)
    fs_ = LossFunction(model, st_loss, 1, size)

    def bare_st(n: int) -> None:
        for _ in range(n):
            fs_(cimg)

    def ours_st(n: int) -> None:
        S.style_transfer(
            model, content, style, size=size, content_layer=_onnx(10), style_layers=st_layers,
            steps=n, record_every=10**9, progress=False,
        )  # fmt: skip

    with torch.no_grad():
        _, fsty = tf(torch.tensor(simg))
        _, fcon = tf(torch.tensor(cimg))

    def gram(t):
        a, b, c, d = t.size()
        m = t.view(a * b, c * d)
        return torch.mm(m, m.t()).div(a * b * c * d)

    t_grams = {k: gram(fsty[k]) for k in BLOCKS}

    def torch_st(n: int) -> None:
        x = torch.tensor(cimg).clone().requires_grad_(True)
        opt = torch.optim.LBFGS([x], max_iter=n, max_eval=n, history_size=20)

        def closure():
            with torch.no_grad():
                x.clamp_(0, 1)
            opt.zero_grad()
            _, fs = tf(x)
            total = torch.nn.functional.mse_loss(fs[10], fcon[10])
            for k in BLOCKS:
                total = total + 1e3 / len(BLOCKS) * torch.nn.functional.mse_loss(
                    gram(fs[k]), t_grams[k]
                )
            total.backward()
            return total

        opt.step(closure)

    rows.append(("style transfer (L-BFGS, 1 image)", bare_st, ours_st, torch_st))

    # -- fooling: targeted PGD on a batch ------------------------------------------------------
    nb = args.fool_batch
    photos = [content, style, sk.astronaut(), sk.rocket()] * (nb // 4 + 1)
    photos = photos[:nb]
    x0 = unit_images(model, photos, size)
    targets = list(np.random.default_rng(1).integers(0, 1000, nb))
    ff = LossFunction(model, S.cross_entropy(targets), nb, size)

    def bare_fool(n: int) -> None:
        for _ in range(n):
            ff(x0)

    def ours_fool(n: int) -> None:
        S.fool(model, photos, target=targets, steps=n, size=size, progress=False)

    tt = torch.tensor(targets)

    def torch_fool(n: int) -> None:
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

    rows.append((f"fool (targeted PGD, batch {nb})", bare_fool, ours_fool, torch_fool))

    # -- deep dream: one tile of the model's size per step --------------------------------------
    d_img = unit_images(model, content, (224, 224))
    fd = LossFunction(model, S.deepdream(_onnx(4)), 1, (224, 224))

    def bare_dream(n: int) -> None:
        for _ in range(n):
            fd(d_img)

    def ours_dream(n: int) -> None:
        S.dream(model, d_img, layer=_onnx(4), octaves=1, steps=n, progress=False)

    def torch_dream(n: int) -> None:
        x = torch.tensor(d_img)
        rng = np.random.default_rng(0)
        for _ in range(n):
            oy, ox = rng.integers(-32, 33, 2)
            xr = torch.roll(x, (int(oy), int(ox)), (2, 3)).requires_grad_(True)
            _, fs = tf(xr)
            (g,) = torch.autograd.grad((fs[4] ** 2).mean(), xr)
            g = torch.roll(g, (-int(oy), -int(ox)), (2, 3))
            x = (x + 1.5 / 255 / (g.abs().mean() + 1e-12) * g).clamp(0, 1).detach()

    rows.append(("dream (224x224, 1 tile)", bare_dream, ours_dream, torch_dream))

    for name, bare, ours, ref in rows:
        t_bare = _best_pair(bare, args.steps, args.repeat)
        t_ours = _best_pair(ours, args.steps, args.repeat)
        t_ref = _best_pair(ref, args.steps, args.repeat)
        print(
            f"  {name:34s} bare VJP {t_bare * 1e3:7.1f}  onnxlens {t_ours * 1e3:7.1f} "
            f"({t_ours / t_bare:.2f}x)  torch {t_ref * 1e3:7.1f}  -> {t_ref / t_ours:.2f}x faster"
        )

    # -- style transfer end to end at 512x512 ---------------------------------------------------
    e = (args.e2e_size, args.e2e_size)
    t0 = time.perf_counter()
    res = S.style_transfer(
        model, content, style, size=e, steps=args.e2e_steps, record_every=10**9, progress=False
    )
    t1 = time.perf_counter()
    print(
        f"  style transfer {e[0]}x{e[1]} end to end, {args.e2e_steps} L-BFGS evaluations (default "
        f"layers): {t1 - t0:.1f} s (content {res.metrics['content'][0]:.3f}, style "
        f"{res.metrics['style'][0]:.4f})"
    )


if __name__ == "__main__":
    main()
