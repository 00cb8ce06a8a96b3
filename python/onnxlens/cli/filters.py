"""`onnxlens filters MODEL --out DIR`: a Conv layer's filter weights as image tiles."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_model_args, load_model


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("filters", help="convolution filter weights as image tiles")
    add_model_args(p)
    p.add_argument("--layer", help="a Conv layer (default: the first)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..render import filter_grid, save_png

    model = load_model(args)
    layer, w = model.filters(args.layer)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    save_png(out / "filters.png", filter_grid(w))
    print(
        f"{layer}: {w.shape[0]} filters {w.shape[1]}x{w.shape[2]}x{w.shape[3]} -> {out / 'filters.png'}"
    )
    return 0
