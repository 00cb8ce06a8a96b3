"""`onnxlens visualize MODEL --layer L --channels 0-15 | --classes 1 281 ... --out DIR`: images
synthesised to maximise channels, units or classes (feature visualisation)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from ..errors import ConfigurationError
from .common import add_model_args, add_preprocess_args, load_model


def parse_indices(text: str) -> list[int]:
    """'0-3,7' -> [0, 1, 2, 3, 7]."""
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part:
                a, b = part.split("-", 1)
                out.extend(range(int(a), int(b) + 1))
            else:
                out.append(int(part))
        except ValueError:
            raise ConfigurationError(
                f"cannot read {text!r} as indices; use e.g. 0-15 or 1,5,9."
            ) from None
    return out


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "visualize",
        help="feature visualisation: images that maximise channels, units or classes",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    add_model_args(p)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--channels", metavar="LIST", help="channels of --layer, e.g. 0-15 or 3,7")
    what.add_argument("--neurons", metavar="LIST", help="centre units of these channels of --layer")
    what.add_argument("--classes", type=int, nargs="+", metavar="K", help="class indices")
    p.add_argument("--layer", help="tensor or node name for --channels/--neurons")
    p.add_argument("--output", help="the output for --classes (default: the first)")
    p.add_argument("--param", choices=["fft", "pixel", "maco"], default="fft")
    p.add_argument(
        "--maco-images", nargs="+", metavar="IMAGE", help="photos for MACO's magnitude spectrum"
    )
    p.add_argument("--steps", type=int, default=512, help="optimisation steps (default 512)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: Adam 0.05)")
    p.add_argument("--optimizer", choices=["adam", "rmsprop"], default="adam")
    p.add_argument("--no-transforms", action="store_true", help="no jitter/scale/rotate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=None, help="targets per run (default 16)")
    p.add_argument(
        "--redirect-steps",
        type=int,
        default=16,
        metavar="N",
        help="redirected ReLU gradients for the first N steps (lucid; 0: off; default 16)",
    )
    reg = p.add_argument_group("priors (Yosinski et al. 2015 projections need --param pixel)")
    reg.add_argument("--tv", type=float, default=0.0, metavar="W", help="total variation weight")
    reg.add_argument("--l2", type=float, default=0.0, metavar="W", help="L2 (towards grey) weight")
    reg.add_argument("--decay", type=float, default=0.0, metavar="R", help="pixel decay per step")
    reg.add_argument("--blur", type=float, default=0.0, metavar="SIGMA", help="Gaussian blur std")
    reg.add_argument("--blur-every", type=int, default=4, metavar="N", help="blur every N steps")
    reg.add_argument("--clip-norm", type=float, default=0.0, metavar="PCT",
                     help="grey the PCT%% of pixels of least norm each step")  # fmt: skip
    reg.add_argument("--clip-contribution", type=float, default=0.0, metavar="PCT",
                     help="grey the PCT%% of pixels of least contribution each step")  # fmt: skip
    p.add_argument(
        "--data", metavar="DIR",
        help="an image folder (mined into OUT/mining) or a finished `onnxlens mine` result: "
        "each channel's image beside its top dataset patches, scored against the dataset max",
    )  # fmt: skip
    p.add_argument("--patches", type=int, default=5, help="dataset patches per channel (--data)")
    p.add_argument("--gif", action="store_true", help="also write the optimisation as GIFs")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_preprocess_args(p)  # its --size H W sets the image size of dynamic-size models
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .. import synthesis as S
    from ..data import load_image
    from ..render import save_png
    from ..render.labels import labelled_grid

    out = Path(args.out)
    model = load_model(args)
    if (args.channels or args.neurons) and not args.layer:
        raise ConfigurationError("--channels and --neurons need --layer (see onnxlens inspect).")
    if args.classes:
        if len(set(args.classes)) != len(args.classes):
            args.classes = list(dict.fromkeys(args.classes))
            print("onnxlens: repeated classes dropped", file=sys.stderr)
        objectives = [S.class_logit(k, output=args.output) for k in args.classes]
        labels = [f"class {k}" for k in args.classes]
        stems = [f"class_{k:04d}" for k in args.classes]
    else:
        idx = parse_indices(args.channels or args.neurons)
        if len(set(idx)) != len(idx):  # one image (and one file) per channel
            idx = list(dict.fromkeys(idx))
            print(f"onnxlens: repeated indices dropped; visualising {len(idx)}", file=sys.stderr)
        make = S.channel if args.channels else S.neuron
        objectives = [make(args.layer, c) for c in idx]
        labels = [f"{'ch' if args.channels else 'unit'} {c}" for c in idx]
        stems = [f"{'channel' if args.channels else 'neuron'}_{c:04d}" for c in idx]
    snapshots: list[int] = []
    if args.gif:
        snapshots = sorted({*range(0, args.steps, max(1, args.steps // 32)), args.steps})
    if args.data and not (args.channels or args.neurons):
        raise ConfigurationError("--data compares channels with a dataset: use it with --channels.")
    maco = [load_image(p) for p in args.maco_images] if args.maco_images else None
    if args.param == "maco" and maco is None:
        from ..demo import demo_photos  # the bundled photos: nothing downloaded

        maco = [img for _, img in demo_photos()]
    res = S.visualize(
        model,
        objectives,
        size=tuple(args.size) if args.size else None,
        steps=args.steps,
        param=args.param,
        transforms=None if args.no_transforms else "standard",
        optimizer=args.optimizer,
        lr=args.lr,
        magnitude_images=maco,
        batch_size=args.batch_size,
        seed=args.seed,
        snapshots=snapshots,
        regularizers=_regularizers(args),
        redirect_steps=args.redirect_steps,
        progress=not args.quiet,
    )
    out.mkdir(parents=True, exist_ok=True)
    n = len(res)
    for i in range(n):
        save_png(out / f"{stems[i]}.png", res.images[i])
    save_png(out / "grid.png", labelled_grid(res.images, labels[:n]))
    record = {
        "model": model.name,
        "settings": res.settings,
        "targets": [
            {"label": labels[i], "objective": repr(res.objectives[i]), "file": f"{stems[i]}.png",
             "final": float(res.final[i]), "trajectory": res.trajectory[:, i].tolist()}
            for i in range(n)
        ],
    }  # fmt: skip
    if args.data:
        _beside_data(args, model, res, idx[:n], labels[:n], record, out)
    (out / "visualize.json").write_text(json.dumps(record, indent=1))
    if args.gif and res.snapshots:
        _write_gifs(out, stems[:n], res.snapshots)
    done = "interrupted: " if res.settings.get("interrupted") else ""
    print(f"{done}wrote {n} visualisations, grid.png and visualize.json to {out}/")
    return 130 if res.settings.get("interrupted") else 0


def _regularizers(args: argparse.Namespace) -> list:
    from ..synthesis import regularizers as R

    regs: list = []
    if args.tv:
        regs.append(R.total_variation(weight=args.tv))
    if args.l2:
        regs.append(R.lp(2.0, weight=args.l2))
    if args.decay:
        regs.append(R.decay(args.decay))
    if args.blur:
        regs.append(R.blur(args.blur, every=args.blur_every))
    if args.clip_norm:
        regs.append(R.clip_norm(args.clip_norm))
    if args.clip_contribution:
        regs.append(R.clip_contribution(args.clip_contribution))
    return regs


def _beside_data(
    args: argparse.Namespace,
    model,
    res,
    channels: list[int],
    labels: list[str],
    record: dict,
    out: Path,
) -> None:
    """Each channel's visualisation, then its top patches of the dataset; each visualisation's
    score (mining's spatial max or mean) over the dataset's best."""
    from .. import mining
    from ..render import save_png
    from ..render.labels import labelled_grid

    layer = model.resolve(args.layer)
    data = Path(args.data)
    if (data / "result.json").exists():
        result = mining.load(data)
    else:
        result = mining.mine(
            model, data, [layer], out / "mining", top_k=max(args.patches, 1),
            progress=not args.quiet,
        )  # fmt: skip
    if layer not in result:
        raise ConfigurationError(
            f"the mining result in {data} has no layer {layer!r} (it has "
            f"{', '.join(sorted(result))}); mine that layer or pick one of those with --layer."
        )
    score = str(result.meta.get("score", "max"))
    fitted = np.stack([model.preprocess.fit(im) for im in res.images])
    vis_scores = mining.channel_scores(model, fitted, [layer], score)[layer]
    side = 112
    import cv2

    tiles, captions = [], []
    for i, c in enumerate(channels):
        patches, values = mining.top_patches(model, result, layer, c, args.patches, side)
        best = values[0] if values else float("nan")
        ratio = float(vis_scores[i, c]) / best if values and best > 0 else float("nan")
        entry = record["targets"][i]
        entry["dataset"] = {
            "score": score, "visualisation": float(vis_scores[i, c]), "dataset_max": best,
            "ratio": ratio, "patch_values": values,
        }  # fmt: skip
        tiles.append(cv2.resize(res.images[i], (side, side), interpolation=cv2.INTER_AREA))
        captions.append(f"{labels[i]}: {ratio:.2f}x")
        for j in range(args.patches):
            if j < len(patches):
                tiles.append(patches[j])
                captions.append(f"{values[j]:.2f}")
            else:
                tiles.append(np.full((side, side, 3), 255, np.uint8))
                captions.append("")
    save_png(
        out / "beside_data.png", labelled_grid(np.stack(tiles), captions, ncols=1 + args.patches)
    )
    ratios = [t["dataset"]["ratio"] for t in record["targets"][: len(channels)]]
    print(
        f"beside_data.png: {len(channels)} channels beside their top {args.patches} patches; "
        f"visualisation / dataset max: median {np.nanmedian(ratios):.2f}x"
    )


def _write_gifs(out: Path, stems: list[str], snapshots: dict[int, np.ndarray]) -> None:
    try:
        from PIL import Image
    except ImportError:
        print("onnxlens: --gif needs Pillow (pip install pillow); skipped", file=sys.stderr)
        return
    steps = sorted(snapshots)
    for i, stem in enumerate(stems):
        frames = [Image.fromarray(snapshots[s][i]) for s in steps]
        frames[0].save(
            out / f"{stem}.gif", save_all=True, append_images=frames[1:], duration=80, loop=0
        )
