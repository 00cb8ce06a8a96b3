"""`onnxlens invert MODEL IMAGE --layers L1 L2 ... --out DIR`: feature inversion, the photo
reconstructed from noise out of each layer's representation of it (what each depth keeps)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_model_args, add_preprocess_args, add_synthesis_args, load_model


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "invert",
        help="feature inversion: reconstruct a photo from one layer's features",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    add_model_args(p)
    p.add_argument("image", help="the photo whose features are inverted")
    p.add_argument("--layers", nargs="+", required=True, metavar="L", help="one image per layer")
    p.add_argument("--steps", type=int, default=300, help="optimisation steps (default 300)")
    p.add_argument("--lr", type=float, default=0.05, help="Adam learning rate (default 0.05)")
    p.add_argument("--alpha", type=float, default=6.0, help="alpha-norm exponent (default 6)")
    p.add_argument("--alpha-weight", type=float, default=1.0)
    p.add_argument("--tv-weight", type=float, default=0.5)
    add_synthesis_args(p)
    add_preprocess_args(p)  # its --size H W sets the image size
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .. import synthesis as S
    from ..data import load_image

    out = Path(args.out)
    model = load_model(args)
    photo = load_image(args.image)
    res = S.invert(
        model, photo, args.layers, size=tuple(args.size) if args.size else None, steps=args.steps,
        lr=args.lr, alpha=args.alpha, alpha_weight=args.alpha_weight, tv_weight=args.tv_weight,
        seed=args.seed, progress=not args.quiet,
    )  # fmt: skip
    n = len(res)
    original = S.common.to_uint8(S.common.unit_images(model, photo, res.images.shape[1:3]))[0]
    err, psnr = res.metrics["feature_error"], res.metrics["psnr"]
    labels = ["original"] + [
        f"{args.layers[i][-22:]} e={err[i]:.3f} {psnr[i]:.1f}dB" for i in range(n)
    ]
    S.common.save_result(
        out, res, [f"invert_{i:02d}" for i in range(n)], [original, *res.images], labels,
        "invert", {"model": model.name, "image": str(args.image)},
    )  # fmt: skip
    done = "interrupted: " if res.interrupted else ""
    print(f"{done}wrote {n} inversions, sheet.png and invert.json to {out}/")
    for i in range(n):
        print(f"  {args.layers[i]}: feature error {err[i]:.4f}, PSNR {psnr[i]:.2f} dB")
    return 130 if res.interrupted else 0
