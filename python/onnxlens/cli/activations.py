"""`onnxlens activations MODEL IMAGE... --out DIR`: per-image channel grids and a sparsity table."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import add_model_args, add_preprocess_args, load_model


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..data import load_image
    from ..methods.activations import (
        default_layers,
        layer_stats,
        select_channels,
        to_nchw,
    )
    from ..methods.layers import layer_layout
    from ..render import channel_grid, save_png
    from ..render.io import safe_filename, unique_stems

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
    stems = unique_stems(args.images)  # distinct per input: a/x.jpg, b/x.jpg -> a_x, b_x
    for layer in layers:
        # Layout per tensor: a Keras export's Conv outputs are NCHW inside an NHWC model.
        a = to_nchw(acts[layer], layer_layout(model, model.resolve(layer)))
        st = layer_stats(layer, a)
        rows.append(st.row())
        if a.ndim != 4:
            print(
                f"{layer}: shape {a.shape} is not a feature map; saved as .npy only",
                file=sys.stderr,
            )
        for i in range(len(args.images)):
            d = out / stems[i]
            d.mkdir(parents=True, exist_ok=True)
            if args.save_arrays or a.ndim != 4:
                import numpy as np

                np.save(d / f"{safe_filename(layer)}.npy", acts[layer][i])
            if a.ndim == 4:
                chans = select_channels(a[i], args.channels)
                save_png(
                    d / f"{safe_filename(layer)}.png",
                    channel_grid(a[i][chans], colormap=args.colormap),
                )
    print(f"{'layer':<48} {'CxHxW':>14} {'sparsity':>9} {'blank':>6}")
    for r in rows:
        print(f"{str(r[0])[-48:]:<48} {r[1]:>14} {r[2]:>9} {r[3]:>6}")
    print(f"wrote {len(layers) * len(args.images)} grids to {out}/")
    return 0
