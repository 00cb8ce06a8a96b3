"""`onnxlens texture MODEL TEXTURE --size H W --out DIR`: texture synthesis (Gatys 2015), an
image of any size whose Gram matrices on several layers match the texture's, from noise."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import (
    add_gram_optimizer_args,
    add_model_args,
    add_preprocess_args,
    add_synthesis_args,
    load_model,
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "texture",
        help="texture synthesis: match a texture's Gram matrices, at any size",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    add_model_args(p)
    p.add_argument("texture", help="the texture image")
    p.add_argument(
        "--layers", nargs="+", metavar="L", help="Gram layers (default: spread over depth)"
    )
    p.add_argument("--weights", nargs="+", type=float, metavar="W", help="one weight per layer")
    p.add_argument(
        "--texture-size", type=int, nargs=2, metavar=("H", "W"), help="texture image size"
    )
    add_gram_optimizer_args(p)
    add_synthesis_args(p)
    add_preprocess_args(p)  # its --size H W is the output size
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .. import synthesis as S
    from ..data import load_image

    out = Path(args.out)
    model = load_model(args)
    tex = load_image(args.texture)
    res = S.texture(
        model, tex, size=tuple(args.size) if args.size else None, layers=args.layers,
        weights=args.weights, texture_size=tuple(args.texture_size) if args.texture_size else None,
        steps=args.steps, optimizer=args.optimizer, lr=args.lr, seed=args.seed,
        progress=not args.quiet,
    )  # fmt: skip
    s0, s1 = res.metrics["style_start"][0], res.metrics["style"][0]
    S.common.save_result(
        out, res, ["texture"], [tex, res.images[0]], ["texture", f"synthesised ({s0 / max(s1, 1e-30):.0f}x lower)"],
        "texture", {"model": model.name, "texture": str(args.texture)},
    )  # fmt: skip
    done = "interrupted: " if res.interrupted else ""
    print(
        f"{done}wrote texture.png, sheet.png and texture.json to {out}/ (style loss {s0:.4g} -> {s1:.4g})"
    )
    return 130 if res.interrupted else 0
