"""`onnxlens inspect MODEL [--all]`: the layer table (name, op, output shape, params), like Keras'
model.summary(): framework layer names where the export kept them, shapes in the model's layout,
shape plumbing hidden unless `--all`."""

from __future__ import annotations

import argparse
import json

from .common import add_model_args, load_model


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "inspect", help="layer table (name, op, output shape, params), like model.summary()"
    )
    add_model_args(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--width", type=int, default=48, help="max width of the layer-name column")
    p.add_argument(
        "--all",
        action="store_true",
        help="list every tensor as stored (shape plumbing, layout transposes and copies included)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    model = load_model(args)
    if args.json:
        print(json.dumps(model.to_dict(), indent=1))
    else:
        from ..model import describe

        print(describe.summary(model, max_name=args.width, all_tensors=args.all))
    return 0
