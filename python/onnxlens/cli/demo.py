"""`onnxlens demo`: the built-in report (EfficientNet-Lite0 on real photos)."""

from __future__ import annotations

import argparse
import sys

from ..runtime.device import DEVICES


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("demo", help="the built-in report: EfficientNet-Lite0 on real photos")
    p.add_argument(
        "--out", default="onnxlens-demo", help="output folder (default: ./onnxlens-demo)"
    )
    p.add_argument("--device", default="auto", choices=DEVICES)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    print(
        "onnxlens demo: EfficientNet-Lite0 with ImageNet weights on scikit-image photos",
        file=sys.stderr,
    )
    index = run_demo(args.out, device=args.device)
    print(f"report: {index}")
    return 0
