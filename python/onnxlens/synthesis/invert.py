"""Feature inversion (Mahendran & Vedaldi 2015): reconstruct an image from one layer's
representation of it.

From noise, minimise the normalised feature error ||Phi(x) - Phi0||^2 / ||Phi0||^2 plus the
alpha-norm prior (mean |x - 0.5|^alpha, alpha = 6) and the total-variation prior (beta = 2).
Every layer asked for is one row of a single batch: all depths are inverted together, one ORT run
per step (the feature losses are in the graph, `losses.feature_loss`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from ..data.images import ImageLike
from ..errors import ConfigurationError
from ..model import Model
from .common import (
    LossFunction,
    SynthesisResult,
    activations_of,
    image_size,
    progress_bar,
    psnr,
    to_uint8,
    unit_images,
)
from .compiled import stack_targets
from .losses import feature_loss
from .optim import Adam
from .param import PixelImage
from .regularizers import Lp, TotalVariation

log = logging.getLogger("onnxlens")


def invert(
    model: Model,
    image: ImageLike | np.ndarray,
    layers: Sequence[str] | str,
    size: tuple[int, int] | None = None,
    steps: int = 300,
    lr: float = 0.05,
    alpha: float = 6.0,
    alpha_weight: float = 1.0,
    tv_weight: float = 0.5,
    seed: int = 0,
    progress: bool = True,
) -> SynthesisResult:
    """Images reconstructed from `image`'s features at each of `layers` (row i: layers[i]).

    `size` (H, W): the image size (default: the model's, or 224x224); fully convolutional models
    exported at one size run at others (`model_at_size`). The optimisation is Adam (`lr`) on a
    colour-decorrelated, sigmoid-bounded pixel parameterisation, from noise (`seed`).
    `alpha_weight` and `tv_weight` weigh the priors against the normalised feature error (which
    starts near 1). Returns the images, the loss curves ("loss", "feature_error") and metrics
    "feature_error" (final, without priors) and "psnr" (dB against the original at `size`).
    """
    names = [layers] if isinstance(layers, str) else list(layers)
    if not names:
        raise ConfigurationError("invert needs at least one layer (see `onnxlens inspect`).")
    if steps < 1:
        raise ConfigurationError(f"steps must be >= 1, got {steps}.")
    size = image_size(model, size)
    target = unit_images(model, image, size)[:1]
    phis = activations_of(model, target, names)
    n = len(names)
    losses = [feature_loss(name, phis[name][0]) for name in names]
    f = LossFunction(model, stack_targets(losses) if n > 1 else losses[0], n, size)
    rng = np.random.default_rng(seed)
    p = PixelImage(n, f.space.channels, size, sd=0.5, rng=rng)
    priors = [Lp(alpha, weight=alpha_weight), TotalVariation(2.0, weight=tv_weight)]
    opt = Adam(lr)
    hist_loss: list[np.ndarray] = []
    hist_feat: list[np.ndarray] = []
    bar = progress_bar(progress, steps, "invert")
    interrupted = False
    try:
        for _ in range(steps):
            img = p.image()
            value, g = f(img)
            total = value.copy()
            for r in priors:
                total += r.weight * r.value(img)
                g += r.weight * r.grad(img)
            opt.step(p.params, -p.backward(g))  # descend
            hist_feat.append(value)
            hist_loss.append(total)
            if not np.isfinite(total).all():
                raise ConfigurationError(
                    "the inversion loss became non-finite; lower lr= or raise the priors' weights."
                )
            if bar is not None:
                bar.update(1)
    except KeyboardInterrupt:
        interrupted = True
        log.warning(
            "onnxlens: invert interrupted after %d steps; keeping the images", len(hist_loss)
        )
    finally:
        if bar is not None:
            bar.close()
    final = p.image()
    err = f.values(final)
    return SynthesisResult(
        images=to_uint8(final),
        images_float=final,
        history={"loss": np.array(hist_loss), "feature_error": np.array(hist_feat)},
        metrics={"feature_error": err, "psnr": psnr(final, np.repeat(target, n, axis=0))},
        settings={
            "method": "invert",
            "layers": names,
            "size": list(size),
            "steps": steps,
            "lr": lr,
            "alpha": alpha,
            "alpha_weight": alpha_weight,
            "tv_weight": tv_weight,
            "seed": seed,
        },
        interrupted=interrupted,
    )
