"""`onnxlens gradient MODEL IMAGE... --target CLASS [--wrt LAYER] [--rules guided] --out DIR`.

Saves the gradient arrays (.npy, float32, the layout of the tensor) and one PNG per image and
wrt tensor: the absolute value maximised over channels, normalised to 0-255 per image, resized
to the fitted input image (nearest for layers smaller than the input). The channel axis is the
tensor's own (a Keras export's Conv outputs are NCHW inside an NHWC model). A Softmax/Sigmoid
output is differentiated at its pre-softmax logit unless `--probability`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ..errors import ConfigurationError
from ..model.targets import explained_output
from ..render.io import OutputNames, safe_filename
from .common import add_model_args, add_preprocess_args, load_model


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:

    p = subparsers.add_parser(
        "gradient",
        help="input (or layer) gradients of a class score: saliency, guided backprop, deconvnet",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    add_model_args(p)
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    p.add_argument(
        "--target",
        type=int,
        nargs="+",
        required=True,
        metavar="CLASS",
        help="class index (one, or one per image)",
    )
    p.add_argument(
        "--wrt",
        nargs="+",
        default=["input"],
        metavar="LAYER",
        help="tensor/node names (default: input)",
    )
    p.add_argument(
        "--output", default=None, help="the model output the target indexes (default: the first)"
    )
    p.add_argument(
        "--probability",
        action="store_true",
        help="differentiate a Softmax/Sigmoid output's probability (default: its pre-softmax logit)",
    )
    p.add_argument(
        "--rules",
        choices=["default", "guided", "deconvnet"],
        default="default",
        help="backward rule set",
    )
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder (created)")
    p.add_argument("--batch-size", type=int, default=None)
    add_preprocess_args(p)
    p.set_defaults(func=run)
    return p


def gradient_image(
    g: np.ndarray, size: tuple[int, int] | None, layout: str | None = "NCHW"
) -> np.ndarray:
    """One sample's gradient -> uint8 (H, W): |g| max over channels, normalised. `layout` is the
    tensor's, batch included ("NCHW", "NHWC" or another permutation; None: NCHW)."""
    import cv2

    a = np.abs(np.asarray(g, dtype=np.float32))
    if a.ndim == 3:
        lay = layout if layout and len(layout) == 4 else "NCHW"
        # The sample's axes: the layout's letters without N, e.g. HWC for NHWC.
        sample = lay.replace("N", "")
        a = a.transpose([sample.index(c) for c in "CHW"]).max(axis=0)
    elif a.ndim != 2:
        raise ConfigurationError(
            f"cannot draw a gradient of shape {g.shape} as an image; the .npy is saved."
        )
    peak = float(a.max())
    img: np.ndarray = (a / peak * 255.0 if peak > 0 else a).astype(np.uint8)
    if size is not None and img.shape != size:
        interp = cv2.INTER_NEAREST if img.shape[0] < size[0] else cv2.INTER_AREA
        img = cv2.resize(img, (size[1], size[0]), interpolation=interp)
    return img


def run(args: argparse.Namespace) -> int:
    import cv2

    from ..methods.layers import layer_layout

    model = load_model(args)
    x, fitted = model.prepare([str(p) for p in args.images])
    target = args.target[0] if len(args.target) == 1 else args.target
    rules = None if args.rules == "default" else args.rules
    output = args.output
    if output is not None and output not in model.output_names:
        output = model.resolve(output)  # a wrong name fails here, with suggestions
    output, note = explained_output(model.proto, model.output_names, output, args.probability)
    if note:
        print(f"onnxlens: {note}", file=sys.stderr)
    grads = model.gradient(
        x, target, output=output, wrt=list(args.wrt), rules=rules, batch_size=args.batch_size
    )
    assert isinstance(grads, dict)
    # Layout per tensor: a Keras export's Conv outputs are NCHW inside an NHWC model.
    layouts = {name: layer_layout(model, model.resolve(name)) for name in grads}
    args.out.mkdir(parents=True, exist_ok=True)
    size = fitted.shape[1:3] if fitted is not None else None
    names = OutputNames()  # no two (image, tensor) pairs share a file
    for name, g in grads.items():
        for i, src in enumerate(args.images):
            stem = names.take(f"{Path(src).stem}_{safe_filename(name)}_{args.rules}")
            npy = args.out / f"{stem}.npy"
            np.save(npy, g[i])
            png = args.out / f"{stem}.png"
            ok = cv2.imwrite(str(png), gradient_image(g[i], size, layouts[name]))
            if not ok:
                raise ConfigurationError(
                    f"could not write {png}; check that the folder is writable."
                )
            print(f"wrote {npy} {tuple(g[i].shape)} and {png}")
    return 0
