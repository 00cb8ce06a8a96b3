"""`onnxlens mine` and `onnxlens embed`: argparse wiring over `onnxlens.mining.mine` / `embed`.

`add_parser(subparsers)` registers both commands (the main CLI's plugin loop calls it once);
`add_embed_parser` registers `embed` alone for a CLI that wires the commands one by one. Run as
`python -m onnxlens.mining.cli mine ...` it works without the main CLI.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _model_args(p: argparse.ArgumentParser) -> None:
    from ..cli import add_model_args, add_preprocess_args

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


def _load_model(args: argparse.Namespace) -> Any:
    from ..cli import load_model

    return load_model(args)


def _has(sub: Any, name: str) -> bool:
    return name in getattr(sub, "choices", {})


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `mine` (and `embed`, unless already there); returns the `mine` parser."""
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
    _model_args(p)
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
    if not _has(subparsers, "embed"):
        add_embed_parser(subparsers)
    return p


def run(args: argparse.Namespace) -> int:
    from .mine import mine

    model = _load_model(args)
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
            ray_address=args.ray_address,
            ray_num_cpus=args.ray_cpus,
            ray_actors=args.ray_actors,
            ray_cpus_per_actor=args.ray_cpus_per_actor,
            restart=args.restart,
            shard_size=args.shard_size,
            galleries=not args.no_galleries,
            progress=not args.quiet,
        )
    except KeyboardInterrupt:
        from .state import Checkpoint

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


def add_embed_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "embed",
        help="a layer's vectors over a dataset and their 2-D map (t-SNE, or UMAP), as PNG and HTML",
    )
    _model_args(p)
    p.add_argument(
        "--layer",
        required=True,
        help="tensor or node name; (N, C, H, W) layers are averaged over H, W",
    )
    p.add_argument(
        "--method",
        choices=["tsne", "umap"],
        default="tsne",
        help="t-SNE (scikit-learn, default) or UMAP (umap-learn)",
    )
    p.add_argument(
        "--color-by",
        choices=["auto", "folder", "predicted", "none"],
        default="auto",
        help="default: folder labels if any, else predicted class",
    )
    p.add_argument("--perplexity", type=float, default=30.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--thumbnails", type=int, default=2000, help="max thumbnails in map.html (default 2000)"
    )
    p.set_defaults(func=run_embed)
    return p


def run_embed(args: argparse.Namespace) -> int:
    from .embed import embed

    model = _load_model(args)
    res = embed(
        model,
        args.data,
        args.layer,
        args.out,
        batch_size=args.batch_size,
        method=args.method,
        color_by=args.color_by,
        seed=args.seed,
        perplexity=args.perplexity,
        thumbnails=args.thumbnails,
        progress=not args.quiet,
    )
    print(f"embedded {len(res['paths'])} images; see {args.out}/map.png and {args.out}/map.html")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m onnxlens.mining.cli {mine,embed} ...` (same options as the main CLI)."""
    from ..cli import run_command

    parser = argparse.ArgumentParser(prog="onnxlens")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    return run_command(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
