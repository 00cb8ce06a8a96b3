"""What every command shares: the model and preprocessing arguments, loading the model, and
turning onnxlens' own errors into one line and exit code 2."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from ..errors import OnnxLensError
from ..runtime.device import DEVICES

if TYPE_CHECKING:
    from ..model import Model


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="path to the .onnx file")
    p.add_argument(
        "--device",
        default="auto",
        choices=DEVICES,
        help="default: auto (CUDA only if it loads)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="ONNX Runtime intra-op threads (default: all cores)",
    )


def add_preprocess_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "preprocessing (defaults: ImageNet RGB, x/255, mean/std; printed at run time)"
    )
    g.add_argument(
        "--preprocess",
        metavar="JSON",
        help="a preprocessing file (default: MODEL's <stem>.preprocess.json if present)",
    )
    g.add_argument(
        "--size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        help="input size when the model's is dynamic",
    )
    g.add_argument(
        "--mean",
        type=float,
        nargs="+",
        help="per-channel mean after scaling, e.g. 0.485 0.456 0.406",
    )
    g.add_argument("--std", type=float, nargs="+", help="per-channel std after scaling")
    g.add_argument(
        "--scale", type=float, help="multiplier of the uint8 pixel values (default 1/255)"
    )
    g.add_argument("--bgr", action="store_true", help="the model takes BGR channel order")
    g.add_argument(
        "--resize",
        choices=["stretch", "crop", "pad"],
        help="how images are fitted to the input size",
    )


def load_model(args: argparse.Namespace) -> Model:
    """The Model the arguments name, with the preprocessing flags applied (and announced)."""
    from ..model import Model

    model = Model(
        args.model,
        device=args.device,
        threads=args.threads,
        preprocess=getattr(args, "preprocess", None),
    )
    if hasattr(args, "mean"):
        model.preprocess = model.preprocess.with_overrides(
            size=args.size,
            mean=args.mean,
            std=args.std,
            scale=args.scale,
            channel_order="BGR" if args.bgr else None,
            resize=args.resize,
        )
        print(f"preprocessing: {model.preprocess.describe()}", file=sys.stderr)
    return model


def run_command(args: argparse.Namespace) -> int:
    """Run a parsed command: onnxlens' own errors become one line and exit code 2, no traceback."""
    try:
        return int(args.func(args) or 0)
    except OnnxLensError as exc:
        print(f"onnxlens: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("onnxlens: interrupted", file=sys.stderr)
        return 130
