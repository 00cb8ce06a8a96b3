"""`onnxlens fool MODEL IMAGE... [--target K] [--eps 4/255] --out DIR`: fooling images,
adversarial perturbations within an L-inf or L2 ball (targeted or untargeted PGD), or with
--from-noise images grown from noise that the model labels --target with high confidence."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..errors import ConfigurationError
from .common import add_model_args, add_preprocess_args, add_synthesis_args, load_model


def parse_eps(text: str) -> float:
    """'4/255' or '0.0157' -> float."""
    try:
        if "/" in text:
            a, b = text.split("/", 1)
            return float(a) / float(b)
        return float(text)
    except (ValueError, ZeroDivisionError):
        raise ConfigurationError(f"cannot read --eps {text!r}; use e.g. 4/255 or 0.0157.") from None


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "fool",
        help="fooling images: adversarial perturbations, or confident images from noise",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    add_model_args(p)
    p.add_argument("images", nargs="*", metavar="IMAGE", help="photos to perturb")
    p.add_argument(
        "--target", type=int, nargs="+", metavar="K", help="target class (one, or one per image)"
    )
    p.add_argument("--eps", default="4/255", help="ball radius in [0, 1] units (default 4/255)")
    p.add_argument("--norm", choices=["linf", "l2"], default="linf")
    p.add_argument("--steps", type=int, default=20, help="PGD steps (default 20)")
    p.add_argument("--step-size", default=None, help="default 2.5 * eps / steps")
    p.add_argument("--loss", choices=["ce", "margin"], default="ce")
    p.add_argument("--from-noise", action="store_true", help="grow images of --target from noise")
    p.add_argument("--confidence", type=float, default=0.99, help="for --from-noise")
    add_synthesis_args(p)
    add_preprocess_args(p)  # its --size H W sets the image size
    p.set_defaults(func=run)


def _name(classes: list[str] | None, k: int) -> str:
    return f"{k} {classes[k][:16]}" if classes else f"class {k}"


def run(args: argparse.Namespace) -> int:
    from .. import synthesis as S
    from ..data import load_image
    from ..data.classes import class_names_for

    out = Path(args.out)
    model = load_model(args)
    size = tuple(args.size) if args.size else None
    if args.from_noise:
        if not args.target:
            raise ConfigurationError("--from-noise needs --target K [K ...] (the classes to grow).")
        res = S.fooling_images(
            model, args.target, size=size, steps=max(args.steps, 50), confidence=args.confidence,
            seed=args.seed, progress=not args.quiet,
        )  # fmt: skip
        names = class_names_for(_classes(model))
        labels = [
            f"{_name(names, int(k))} {p:.0%}"
            for k, p in zip(args.target, res.metrics["prob"], strict=True)
        ]
        stems = [f"noise_{k:04d}" for k in args.target]
        S.common.save_result(
            out, res, stems, list(res.images), labels, "fool", {"model": model.name}
        )
        print(
            f"wrote {len(res)} images, sheet.png and fool.json to {out}/ ({int(res.metrics['success'].sum())} of {len(res)} >= {args.confidence:.0%})"
        )
        return 130 if res.interrupted else 0
    if not args.images:
        raise ConfigurationError("give at least one IMAGE to perturb (or --from-noise --target K).")
    eps = parse_eps(args.eps)
    photos = [load_image(p) for p in args.images]
    target = None
    if args.target:
        target = args.target[0] if len(args.target) == 1 else args.target
    res = S.fool(
        model, photos, target=target, eps=eps, norm=args.norm, steps=args.steps,
        step_size=parse_eps(args.step_size) if args.step_size else None, size=size,
        loss=args.loss, seed=args.seed, progress=not args.quiet,
    )  # fmt: skip
    names = class_names_for(_classes(model))
    x0 = S.common.to_uint8(S.common.unit_images(model, photos, res.images.shape[1:3]))
    tiles, labels = [], []
    m = res.metrics
    for i in range(len(res)):
        d = res.images[i].astype(np.float32) - x0[i].astype(np.float32)
        tiles += [x0[i], np.clip(128 + 10 * d, 0, 255).astype(np.uint8), res.images[i]]
        labels += [
            _name(names, int(m["label"][i])),
            "perturbation x10",
            f"{_name(names, int(m['prediction'][i]))} {m['prediction_prob'][i]:.0%}",
        ]
    stems = [f"fool_{i:02d}" for i in range(len(res))]
    S.common.save_result(
        out, res, stems, tiles, labels, "fool", {"model": model.name, "images": list(args.images)}
    )
    done = "interrupted: " if res.interrupted else ""
    print(
        f"{done}wrote {len(res)} images, sheet.png and fool.json to {out}/ (success {m['success'].mean():.0%} at eps {eps:.4g}, {args.norm})"
    )
    return 130 if res.interrupted else 0


def _classes(model) -> int | None:
    shape = model.proto.graph.output[0].type.tensor_type.shape.dim
    return int(shape[1].dim_value) if len(shape) == 2 and shape[1].dim_value else None
