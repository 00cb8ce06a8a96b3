"""`onnxlens report MODEL IMAGE... --out DIR`: the per-image report for any model (predictions,
Grad-CAM of the top classes, guided Grad-CAM, the attribution methods compared, layers,
activations, filters), linked into an atlas of the same model when `--atlas SITE` is given."""

from __future__ import annotations

import argparse
from typing import Any

from .common import add_model_args, add_preprocess_args, load_model


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "report",
        help="a per-image HTML report: predictions, Grad-CAM, methods compared, activations",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    add_model_args(p)
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    p.add_argument("--out", required=True, help="output folder (index.html and its images)")
    p.add_argument("--labels", metavar="FILE", help="class names, one a line (default: ImageNet for 1,000 classes)")  # fmt: skip
    p.add_argument("--atlas", metavar="SITE", help="an `onnxlens atlas` folder of the same model to link into")  # fmt: skip
    p.add_argument(
        "--methods", nargs="+", metavar="NAME", default=None,
        help="methods to compare (default: a cheap set; 'all' for every method; 'none' to skip)",
    )  # fmt: skip
    p.add_argument("--top", type=int, default=3, help="classes per image for Grad-CAM (default 3)")
    p.add_argument("--channels", type=int, default=32, help="activation channels per layer shown")
    add_preprocess_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..atlas.report import DEFAULT_METHODS, build_report

    model = load_model(args)
    methods = (
        DEFAULT_METHODS
        if args.methods is None
        else ([] if args.methods == ["none"] else args.methods)
    )
    index = build_report(
        model, args.images, args.out, labels=args.labels, atlas=args.atlas, methods=methods,
        top=args.top, channels=args.channels,
    )  # fmt: skip
    print(f"report of {len(args.images)} image(s); open {index}")
    return 0
