"""`onnxlens gradient MODEL IMAGE... --target CLASS [--wrt LAYER] [--rules guided] --out DIR`.

Saves the gradient arrays (.npy, float32, the layout of the tensor) and one PNG per image and
wrt tensor: the absolute value maximised over channels, normalised to 0-255 per image, resized
to the fitted input image (nearest for layers smaller than the input).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..errors import ConfigurationError
from ..render.io import safe_filename
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


def gradient_image(g: np.ndarray, size: tuple[int, int] | None, layout: str = "NCHW") -> np.ndarray:
    """(C, H, W) or (H, W, C) gradient -> uint8 (H, W): |g| max over channels, normalised."""
    import cv2

    a = np.abs(np.asarray(g, dtype=np.float32))
    if a.ndim == 3:
        a = a.max(axis=0 if layout != "NHWC" else 2)
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

    model = load_model(args)
    x, fitted = model.prepare([str(p) for p in args.images])
    target = args.target[0] if len(args.target) == 1 else args.target
    rules = None if args.rules == "default" else args.rules
    grads = model.gradient(
        x, target, output=args.output, wrt=list(args.wrt), rules=rules, batch_size=args.batch_size
    )
    assert isinstance(grads, dict)
    args.out.mkdir(parents=True, exist_ok=True)
    size = fitted.shape[1:3] if fitted is not None else None
    for name, g in grads.items():
        for i, src in enumerate(args.images):
            stem = f"{Path(src).stem}_{safe_filename(name)}_{args.rules}"
            npy = args.out / f"{stem}.npy"
            np.save(npy, g[i])
            png = args.out / f"{stem}.png"
            layout = model.layout if name == "input" else "NCHW"
            ok = cv2.imwrite(str(png), gradient_image(g[i], size, layout))
            if not ok:
                raise ConfigurationError(
                    f"could not write {png}; check that the folder is writable."
                )
            print(f"wrote {npy} {tuple(g[i].shape)} and {png}")
    return 0
