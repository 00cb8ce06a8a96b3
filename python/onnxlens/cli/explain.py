"""`onnxlens explain MODEL IMAGE... --method M [--output NAME] [--target K] --out DIR`: heat-map
overlays per image and method, and a comparison grid (rows: images, columns: methods).

`--output` chooses the output explained (default: the first); `--target` the class of it
(default: each image's top class). A Softmax/Sigmoid output is explained by its pre-softmax logit
(keras-vis' "swap softmax for linear") unless `--probability`. The old spelling `--target OUTPUT_NAME` still works for one
release, as `--output OUTPUT_NAME`, with a deprecation notice on stderr."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np

from ..errors import ConfigurationError
from ..model.targets import explained_output
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
        "--output",
        default=None,
        metavar="NAME",
        help="the output to explain (an output, tensor or node name; default: the first output)",
    )
    p.add_argument(
        "--probability",
        action="store_true",
        help="explain a Softmax/Sigmoid output's probability (default: its pre-softmax logit)",
    )
    p.add_argument(
        "--target",
        default=None,
        metavar="K",
        help="class index of the output, or one per image comma-separated (default: each image's top class)",
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


def _target(
    text: str | None, output: str | None, model
) -> tuple[int | list[int] | None, str | None]:
    """(target, output) from --target and --output."""
    if text is None:
        return None, output
    try:
        vals = [int(t) for t in text.split(",")]
    except ValueError:
        if text not in model.output_names:
            raise ConfigurationError(
                f"--target {text!r} is not a class index or a comma-separated list of indices; "
                "--target takes class indices, and --output NAME chooses the output (one of "
                f"{', '.join(model.output_names)})."
            ) from None
        if output is not None and output != text:
            raise ConfigurationError(
                f"--target {text!r} names an output but --output is {output!r}; --target takes "
                f"class indices: use --output {text} alone."
            ) from None
        # Deprecated: printed through the CLI's logger, since Python hides DeprecationWarnings
        # outside __main__ and a command-line user would never see one.
        log.warning(
            "onnxlens: --target %s (an output name) is deprecated and will be removed in the "
            "next release; use --output %s (and --target for class indices).",
            text,
            text,
        )
        return None, text
    return (vals[0] if len(vals) == 1 else vals), output


def run(args: argparse.Namespace) -> int:
    from ..data import load_image
    from ..methods.registry import METHODS, make
    from ..render.io import safe_filename, save_png, unique_stems

    model = load_model(args)
    names = list(METHODS) if "all" in args.method else list(dict.fromkeys(args.method))
    images = [load_image(p) for p in args.images]
    x, fitted = model.prepare(images)
    target, output = _target(args.target, args.output, model)
    if output is not None:
        # A wrong name fails before any method runs, with suggestions.
        output = output if output in model.output_names else model.resolve(output)
    output, note = explained_output(model.proto, model.output_names, output, args.probability)
    if note:
        print(f"onnxlens: {note}", file=sys.stderr)
    out = Path(args.out)
    stems = unique_stems(args.images, reserved=["comparison.png"])  # distinct per input
    columns: list[np.ndarray] = []
    classes = _class_names(model, output)
    for name in names:
        layer = args.layer[0] if args.layer and len(args.layer) == 1 else args.layer
        exp = make(name, model, layer=layer).attribute(x, target=target, output=output)
        exp.images = fitted
        ov = exp.overlay(colormap=args.colormap, alpha=args.alpha)
        columns.append(ov)
        for i, stem in enumerate(stems):
            d = out / stem  # already a safe file name
            d.mkdir(parents=True, exist_ok=True)
            save_png(d / f"{safe_filename(name)}.png", ov[i])
            if args.save_arrays:
                np.save(d / f"{safe_filename(name)}.npy", exp.heatmap[i])
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


def _class_names(model, output: str | None) -> list[str] | None:
    from ..data.classes import class_names_for

    shape = model.layer(output if output is not None else model.output_names[0]).shape
    k = shape[-1] if shape else None
    return class_names_for(k if isinstance(k, int) else None)


def _label(t: int, classes: list[str] | None) -> str:
    return f"{t} ({classes[t]})" if classes else str(t)
