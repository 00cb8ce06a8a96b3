"""`onnxlens atlas MODEL DATA --out SITE`: a browsable atlas of the model's channels (feature
visualisations beside their top dataset patches, statistics, classes, an embedding map) as a
static site. Every step is cached in SITE; a killed run resumes when the same command reruns."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError
from .common import add_model_args, add_preprocess_args, load_model


def _channels(text: str) -> int | str:
    if text == "all":
        return "all"
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a count or 'all', got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a count >= 1, got {n}")
    return n


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "atlas",
        help="a static-site atlas: every channel's visualisation beside its top dataset patches",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    add_model_args(p)  # MODEL, --device, --threads
    p.add_argument(
        "data", help="a folder of images (recursive), a .txt/.csv list, or a .parquet of images"
    )
    p.add_argument("--out", required=True, help="the site's folder (also holds the cached steps)")
    p.add_argument(
        "--layers", nargs="+", metavar="LAYER",
        help="tensor or node names (default: 4 spread over the depth, announced)",
    )  # fmt: skip
    p.add_argument(
        "--channels", type=_channels, default=16, metavar="N|all",
        help="channels per layer to visualise and page, 0..N-1 (default 16; mining covers all)",
    )  # fmt: skip
    p.add_argument("--steps", type=int, default=256, help="visualisation steps (default 256)")
    p.add_argument(
        "--vis-size", type=int, nargs=2, metavar=("H", "W"), default=None,
        help="visualisation size (default 128 128 where the model runs there)",
    )  # fmt: skip
    p.add_argument("--top-k", type=int, default=8, help="dataset images per channel (default 8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--vis-batch", type=int, default=8, help="channels per synthesis run (default 8)"
    )
    p.add_argument(
        "--classes", nargs="+", type=int, metavar="K", default=None,
        help="class visualisations of these classes (default: the most predicted ones)",
    )  # fmt: skip
    p.add_argument("--no-classes", action="store_true", help="no class visualisations")
    p.add_argument("--stats-images", type=int, default=256, help="images the statistics sample")
    p.add_argument(
        "--link-images", type=int, default=8,
        help="top images per channel its connections to the previous layer average over",
    )  # fmt: skip
    p.add_argument("--no-embedding", action="store_true", help="skip the embedding map")
    p.add_argument("--page-size", type=int, default=64, help="channels per layer page (default 64)")
    p.add_argument("--shard-size", type=int, default=256, help="images per mining shard")
    p.add_argument("--engine", choices=["local", "ray"], default="local")
    p.add_argument("--ray-address", default=None, help="a Ray cluster ('auto'); default: local")
    p.add_argument("--ray-cpus", type=int, default=None, help="CPUs of the local Ray")
    p.add_argument("--ray-cpus-per-actor", type=int, default=1, help="CPUs per Ray worker")
    p.add_argument("--restart", action="store_true", help="discard the cached steps, start over")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_preprocess_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..atlas import build_atlas
    from ..mining import RayOptions

    if args.no_classes and args.classes:
        raise ConfigurationError("--classes and --no-classes contradict each other; pick one.")
    ray = RayOptions(
        address=args.ray_address, num_cpus=args.ray_cpus, cpus_per_actor=args.ray_cpus_per_actor
    )
    model = load_model(args)
    try:
        atlas = build_atlas(
            model, args.data, args.out, layers=args.layers,
            channels=None if args.channels == "all" else args.channels,
            engine=args.engine, steps=args.steps,
            size=tuple(args.vis_size) if args.vis_size else None,
            top_k=args.top_k, seed=args.seed, vis_batch=args.vis_batch,
            classes="none" if args.no_classes else (args.classes or "auto"),
            stats_images=args.stats_images, link_images=args.link_images,
            embedding=False if args.no_embedding else None,
            page_size=args.page_size, shard_size=args.shard_size, ray=ray,
            restart=args.restart, progress=not args.quiet,
        )  # fmt: skip
    except KeyboardInterrupt:
        again = " without --restart" if args.restart else ""
        print(
            f"onnxlens: interrupted; the finished steps are kept in {args.out}. Re-run the same "
            f"command{again} to resume.",
            file=sys.stderr,
        )
        return 130
    cfg = atlas.config
    shown = sum(len(v) for v in cfg.channels.values())
    print(
        f"atlas of {cfg.model_name}: {len(cfg.layers)} layers, {shown} channels; open "
        f"{Path(atlas.index)}"
    )
    return 0
