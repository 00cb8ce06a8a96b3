"""`onnxlens mine MODEL DATA --layers ... --out DIR`: top-k images and patches per channel."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .common import add_model_args, add_preprocess_args, load_model


def dataset_args(p: argparse.ArgumentParser) -> None:
    """MODEL DATA, the model and preprocessing options, --batch-size, --out, --quiet."""
    add_model_args(p)  # MODEL, --device, --threads
    p.add_argument(
        "data",
        help="a folder of images (recursive), a .txt/.csv list of paths, or a .parquet of encoded images",
    )
    add_preprocess_args(p)
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="images per forward pass (default 32; results do not depend on it)",
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "mine",
        help="top-k maximally activating images and patches per channel over a dataset (resumable, local or Ray)",
        description=(
            "For every channel of each layer, the top-k images of DATA by spatial max (or mean), with the "
            "arg-max unit and its receptive-field patch. Writes OUT/result.json, OUT/layers/*.npz, "
            "OUT/galleries/, OUT/index.html; read back with onnxlens.mining.load(OUT). Killed runs resume "
            "when the same command is re-run."
        ),
    )
    dataset_args(p)
    p.add_argument(
        "--layers",
        nargs="+",
        required=True,
        metavar="LAYER",
        help="tensor or node names (see `onnxlens inspect`)",
    )
    p.add_argument("--top-k", type=int, default=16, help="images kept per channel (default 16)")
    p.add_argument(
        "--score",
        choices=["max", "mean"],
        default="max",
        help="rank images by the channel's spatial max (default) or mean",
    )
    p.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="local (default) or a Ray Data pipeline",
    )
    p.add_argument(
        "--ray-address",
        default=None,
        help="a Ray cluster address ('auto' for this machine's); default: start a local Ray",
    )
    p.add_argument(
        "--ray-cpus",
        type=int,
        default=None,
        help="CPUs of the local Ray started by the command (default: all)",
    )
    p.add_argument(
        "--ray-actors",
        type=int,
        default=None,
        help="model actors (default: cluster CPUs / --ray-cpus-per-actor)",
    )
    p.add_argument(
        "--ray-cpus-per-actor",
        type=int,
        default=1,
        help="CPUs (= ORT threads) per actor (default 1)",
    )
    p.add_argument(
        "--shard-size", type=int, default=1024, help="images per checkpointed shard (default 1024)"
    )
    p.add_argument(
        "--restart", action="store_true", help="discard the finished shards in OUT and start over"
    )
    p.add_argument(
        "--no-galleries",
        action="store_true",
        help="skip the patch galleries (arrays and index only)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..mining import RayOptions, mine

    # Built before the model loads, so a bad --ray-* value fails at once.
    ray = RayOptions(
        address=args.ray_address,
        num_cpus=args.ray_cpus,
        actors=args.ray_actors,
        cpus_per_actor=args.ray_cpus_per_actor,
    )
    model = load_model(args)
    try:
        res = mine(
            model,
            args.data,
            args.layers,
            args.out,
            top_k=args.top_k,
            batch_size=args.batch_size,
            score=args.score,
            engine=args.engine,
            ray=ray,
            restart=args.restart,
            shard_size=args.shard_size,
            galleries=not args.no_galleries,
            progress=not args.quiet,
        )
    except KeyboardInterrupt:
        from ..mining.checkpoint import Checkpoint

        done = len(Checkpoint(Path(args.out)).done())
        again = " without --restart" if args.restart else ""  # --restart would discard them
        print(
            f"onnxlens: interrupted; {done} finished shard(s) are kept in {args.out}/state. "
            f"Re-run the same command{again} to resume.",
            file=sys.stderr,
        )
        return 130
    meta = res.meta
    print(
        f"mined {meta['images_mined']} images ({meta['skipped_count']} skipped) for "
        f"{len(meta['layers'])} layer(s); open {res.dir / 'index.html'}"
    )
    return 0
