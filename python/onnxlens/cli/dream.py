"""`onnxlens dream MODEL IMAGE --layer L [--octaves 4] --out DIR`: deep dream of a photo (what a
layer, channel or class sees in it, amplified), at the photo's size, in tiles."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import ConfigurationError
from .common import add_model_args, add_preprocess_args, add_synthesis_args, load_model


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "dream",
        help="deep dream: amplify what a layer, channel or class sees in a photo",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    add_model_args(p)
    p.add_argument("image", help="the photo to dream on")
    p.add_argument("--layer", help="layer to amplify (mean squared activation)")
    p.add_argument("--channel", type=int, help="only this channel of --layer")
    p.add_argument("--class", dest="klass", type=int, metavar="K", help="amplify class K instead")
    p.add_argument("--guide", help="a guide image: move --layer's features toward its features")
    p.add_argument("--octaves", type=int, default=4)
    p.add_argument("--octave-scale", type=float, default=1.4)
    p.add_argument("--steps", type=int, default=10, help="steps per octave (default 10)")
    p.add_argument("--step-size", type=float, default=1.5, help="in grey levels (default 1.5)")
    p.add_argument("--jitter", type=int, default=32, help="random roll, pixels (default 32)")
    p.add_argument("--tile", type=int, default=None, help="gradient tile size (default: model's)")
    p.add_argument("--tile-batch", type=int, default=4, help="tiles per run (memory bound)")
    add_synthesis_args(p)
    add_preprocess_args(p)  # its --size H W resizes the photo first (default: its own size)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .. import synthesis as S
    from ..data import load_image

    out = Path(args.out)
    if args.klass is None and not args.layer:
        raise ConfigurationError(
            "say what to dream of: --layer L (optionally --channel C) or --class K."
        )
    model = load_model(args)
    photo = load_image(args.image)
    objective = None
    if args.klass is not None:
        objective = S.class_logit(args.klass)
    elif args.channel is not None and not args.guide:
        objective = S.channel(args.layer, args.channel)
    res = S.dream(
        model,
        photo,
        objective=objective,
        layer=args.layer if objective is None else None,
        guide=load_image(args.guide) if args.guide else None,
        octaves=args.octaves,
        octave_scale=args.octave_scale,
        steps=args.steps,
        step_size=args.step_size / 255.0,
        jitter=args.jitter,
        size=tuple(args.size) if args.size else None,
        tile=args.tile,
        tile_batch=args.tile_batch,
        seed=args.seed,
        progress=not args.quiet,
    )
    original = S.common.to_uint8(S.common.unit_images(model, photo, res.images.shape[1:3]))[0]
    curve = res.history["objective_by_octave"][:, 0]
    S.common.save_result(
        out, res, ["dream"], [original, res.images[0]],
        ["original", f"dream ({curve[0]:.3g} -> {curve[-1]:.3g})"], "dream",
        {"model": model.name, "image": str(args.image)},
    )  # fmt: skip
    done = "interrupted: " if res.interrupted else ""
    print(
        f"{done}wrote dream.png, sheet.png and dream.json to {out}/ (objective {curve[0]:.4g} -> {curve[-1]:.4g})"
    )
    return 130 if res.interrupted else 0
