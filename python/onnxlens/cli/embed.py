"""`onnxlens embed MODEL DATA --layer L --out DIR`: a layer's vectors and their 2-D map."""

from __future__ import annotations

import argparse
from typing import Any

from .common import load_model
from .mine import dataset_args


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "embed",
        help="a layer's vectors over a dataset and their 2-D map (t-SNE, or UMAP), as PNG and HTML",
    )
    dataset_args(p)
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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..mining import embed

    model = load_model(args)
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
