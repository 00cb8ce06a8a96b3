"""The `onnxlens` command: a thin argparse layer over the public Python API."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .errors import OnnxLensError
from .runtime.device import DEVICES


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


def load_model(args: argparse.Namespace):  # -> Model, kept untyped to import lazily
    from .model import Model

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


def cmd_inspect(args: argparse.Namespace) -> int:
    model = load_model(args)
    if args.json:
        print(json.dumps(model.to_dict(), indent=1))
    else:
        print(model.summary(max_name=args.width))
    return 0


def cmd_activations(args: argparse.Namespace) -> int:
    from .data import load_image
    from .methods.activations import (
        default_layers,
        layer_stats,
        safe_name,
        select_channels,
        to_nchw,
    )
    from .render import channel_grid, save_png

    model = load_model(args)
    layers = args.layers or default_layers(model, 4)
    if not layers:
        print(
            "onnxlens: error: the model has no spatial layers; name some with --layers",
            file=sys.stderr,
        )
        return 2
    images = [load_image(p) for p in args.images]
    acts = model.activations(images, layers)
    out = Path(args.out)
    rows = []
    for layer in layers:
        a = to_nchw(acts[layer], model.layout)
        st = layer_stats(layer, a)
        rows.append(st.row())
        if a.ndim != 4:
            print(
                f"{layer}: shape {a.shape} is not a feature map; saved as .npy only",
                file=sys.stderr,
            )
        for i, path in enumerate(args.images):
            d = out / Path(path).stem
            d.mkdir(parents=True, exist_ok=True)
            if args.save_arrays or a.ndim != 4:
                import numpy as np

                np.save(d / f"{safe_name(layer)}.npy", acts[layer][i])
            if a.ndim == 4:
                chans = select_channels(a[i], args.channels)
                save_png(
                    d / f"{safe_name(layer)}.png", channel_grid(a[i][chans], colormap=args.colormap)
                )
    print(f"{'layer':<48} {'CxHxW':>14} {'sparsity':>9} {'blank':>6}")
    for r in rows:
        print(f"{str(r[0])[-48:]:<48} {r[1]:>14} {r[2]:>9} {r[3]:>6}")
    print(f"wrote {len(layers) * len(args.images)} grids to {out}/")
    return 0


def cmd_filters(args: argparse.Namespace) -> int:
    from .render import filter_grid, save_png

    model = load_model(args)
    layer, w = model.filters(args.layer)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    save_png(out / "filters.png", filter_grid(w))
    print(
        f"{layer}: {w.shape[0]} filters {w.shape[1]}x{w.shape[2]}x{w.shape[3]} -> {out / 'filters.png'}"
    )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    print(
        "onnxlens demo: EfficientNet-Lite0 with ImageNet weights on scikit-image photos",
        file=sys.stderr,
    )
    index = run_demo(args.out, device=args.device)
    print(f"report: {index}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="onnxlens", description="See inside CNNs from their exported ONNX files."
    )
    parser.add_argument("--version", action="version", version=f"onnxlens {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what onnxlens does")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "inspect", help="layer table (name, op, output shape, params), like model.summary()"
    )
    add_model_args(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--width", type=int, default=48, help="max width of the layer-name column")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser(
        "activations", help="channel grids and sparsity of intermediate layers for images"
    )
    add_model_args(p)
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument(
        "--layers", nargs="+", help="tensor or node names (default: 4 layers spread over the depth)"
    )
    p.add_argument(
        "--channels", type=int, default=None, help="show the N most active channels (default: all)"
    )
    p.add_argument("--colormap", default="viridis")
    p.add_argument("--save-arrays", action="store_true", help="also save each activation as .npy")
    p.add_argument("--out", required=True, help="output folder")
    add_preprocess_args(p)
    p.set_defaults(func=cmd_activations)

    p = sub.add_parser("filters", help="convolution filter weights as image tiles")
    add_model_args(p)
    p.add_argument("--layer", help="a Conv layer (default: the first)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_filters)

    p = sub.add_parser("demo", help="the built-in report: EfficientNet-Lite0 on real photos")
    p.add_argument(
        "--out", default="onnxlens-demo", help="output folder (default: ./onnxlens-demo)"
    )
    p.add_argument("--device", default="auto", choices=DEVICES)
    p.set_defaults(func=cmd_demo)

    for plugin in _plugins():
        plugin.add_parser(sub)
    return parser


def _plugins() -> list:
    """Commands that live beside their capability (module with add_parser/run)."""
    import importlib

    mods = []
    for name in (
        "onnxlens.autodiff.cli_gradient",
        "onnxlens.methods.cli_explain",
        "onnxlens.mining.cli",
    ):
        try:
            mods.append(importlib.import_module(name))
        except ModuleNotFoundError as exc:
            if exc.name is None or not name.startswith(exc.name):
                raise
    return mods


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s"
    )
    logging.getLogger("onnxlens").setLevel(logging.INFO)
    if not logging.getLogger("onnxlens").handlers:
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter("%(message)s"))
        logging.getLogger("onnxlens").addHandler(h)
        logging.getLogger("onnxlens").propagate = False
    return run_command(args)


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


if __name__ == "__main__":
    sys.exit(main())
