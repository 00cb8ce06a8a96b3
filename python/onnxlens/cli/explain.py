"""`onnxlens explain MODEL IMAGE... --method M --target T --out DIR`: heat-map overlays per image
and method, and a comparison grid (rows: images, columns: methods)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from ..render import comparison_grid
from .common import add_model_args, add_preprocess_args, load_model

log = logging.getLogger("onnxlens")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from ..methods.registry import METHODS

    p = subparsers.add_parser(
        "explain", help="attribution heat maps (Grad-CAM, IG, occlusion, ...) for images"
    )
    add_model_args(p)
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument(
        "--method",
        nargs="+",
        default=["gradcam"],
        choices=[*METHODS, "all"],
        metavar="METHOD",
        help=f"one or more of: {', '.join(METHODS)}, or all (default: gradcam)",
    )
    p.add_argument(
        "--target",
        default=None,
        help="class index (or one per image, comma-separated), or an output name; default: each image's top class",
    )
    p.add_argument(
        "--layer",
        nargs="+",
        default=None,
        help="layer(s) for CAM methods (default: the last spatial layer before pooling)",
    )
    p.add_argument("--colormap", default="jet")
    p.add_argument("--alpha", type=float, default=0.5)
    p.add_argument("--save-arrays", action="store_true", help="also save each heat map as .npy")
    p.add_argument("--out", required=True, help="output folder")
    add_preprocess_args(p)
    p.set_defaults(func=run)


def _target(text: str | None, model) -> object:
    if text is None:
        return None
    if text in model.output_names:
        return text
    try:
        vals = [int(t) for t in text.split(",")]
    except ValueError:
        from ..errors import ConfigurationError

        raise ConfigurationError(
            f"--target {text!r} is neither a class index, a comma-separated list of indices, nor an output "
            f"({', '.join(model.output_names)})."
        ) from None
    return vals[0] if len(vals) == 1 else vals


def run(args: argparse.Namespace) -> int:
    from ..data import load_image
    from ..methods.activations import safe_name
    from ..methods.registry import METHODS, make
    from ..render import save_png

    model = load_model(args)
    names = list(METHODS) if "all" in args.method else list(dict.fromkeys(args.method))
    images = [load_image(p) for p in args.images]
    x, fitted = model.prepare(images)
    target = _target(args.target, model)
    out = Path(args.out)
    stems = [Path(p).stem for p in args.images]
    columns: list[np.ndarray] = []
    classes = _class_names(model)
    for name in names:
        layer = args.layer[0] if args.layer and len(args.layer) == 1 else args.layer
        exp = make(name, model, layer=layer).attribute(x, target=target)
        exp.images = fitted
        ov = exp.overlay(colormap=args.colormap, alpha=args.alpha)
        columns.append(ov)
        for i, stem in enumerate(stems):
            d = out / safe_name(stem)
            d.mkdir(parents=True, exist_ok=True)
            save_png(d / f"{safe_name(name)}.png", ov[i])
            if args.save_arrays:
                np.save(d / f"{safe_name(name)}.npy", exp.heatmap[i])
        tg = exp.target
        label = (
            ", ".join(_label(int(t), classes) for t in tg) if tg.dtype.kind != "f" else "cotangent"
        )
        print(
            f"{name:<14} target {label}"
            + (f"  layer {', '.join(exp.layers)}" if exp.layers else "")
        )
    grid = comparison_grid(fitted, columns)
    out.mkdir(parents=True, exist_ok=True)
    save_png(out / "comparison.png", grid)
    print(
        f"wrote {len(names) * len(stems)} overlays and {out / 'comparison.png'} (rows: images; columns: input, {', '.join(names)})"
    )
    return 0


def _class_names(model) -> list[str] | None:
    from ..data.classes import class_names_for

    shape = model.layer(model.output_names[0]).shape
    k = shape[-1] if shape else None
    return class_names_for(k if isinstance(k, int) else None)


def _label(t: int, classes: list[str] | None) -> str:
    return f"{t} ({classes[t]})" if classes else str(t)
