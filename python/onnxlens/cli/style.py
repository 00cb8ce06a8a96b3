"""`onnxlens style MODEL CONTENT STYLE [--content-layer L] [--style-layers ...] --out DIR`:
neural style transfer (Gatys 2016), the content photo painted with the style image's Gram
statistics."""

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
        "style",
        help="style transfer: a photo's content in another image's style",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    add_model_args(p)
    p.add_argument("content", help="the content photo")
    p.add_argument("style", help="the style image")
    p.add_argument("--content-layer", help="default: deep in the network (Gatys' conv4_2)")
    p.add_argument("--style-layers", nargs="+", metavar="L", help="default: spread over depth")
    p.add_argument("--style-weights", nargs="+", type=float, metavar="W", help="per style layer")
    p.add_argument("--content-weight", type=float, default=1.0)
    p.add_argument("--style-weight", type=float, default=5.0)
    p.add_argument("--init", choices=["content", "noise"], default="content")
    add_gram_optimizer_args(p)
    add_synthesis_args(p)
    add_preprocess_args(p)  # its --size H W is the output size
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .. import synthesis as S
    from ..data import load_image

    out = Path(args.out)
    model = load_model(args)
    content, style = load_image(args.content), load_image(args.style)
    res = S.style_transfer(
        model, content, style, size=tuple(args.size) if args.size else None,
        content_layer=args.content_layer, style_layers=args.style_layers,
        style_weights=args.style_weights, content_weight=args.content_weight,
        style_weight=args.style_weight, init=args.init, steps=args.steps,
        optimizer=args.optimizer, lr=args.lr, seed=args.seed, progress=not args.quiet,
    )  # fmt: skip
    size = res.images.shape[1:3]
    tiles = [S.common.to_uint8(S.common.unit_images(model, im, size))[0] for im in (content, style)]
    m = res.metrics
    S.common.save_result(
        out, res, ["style"], [*tiles, res.images[0]],
        ["content", "style", f"result (style {m['style'][0]:.3g}, content {m['content'][0]:.3g})"],
        "style", {"model": model.name, "content": str(args.content), "style": str(args.style)},
    )  # fmt: skip
    done = "interrupted: " if res.interrupted else ""
    print(
        f"{done}wrote style.png, sheet.png and style.json to {out}/ (style loss {m['style'][0]:.4g}, "
        f"content loss {m['content'][0]:.4g}; the style image's own: {m['content_of_style'][0]:.4g})"
    )
    return 130 if res.interrupted else 0
