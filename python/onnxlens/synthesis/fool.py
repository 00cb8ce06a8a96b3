"""Fooling images: adversarial perturbations (Szegedy et al. 2014; PGD, Madry et al. 2018) and
images grown from noise that the model labels with high confidence (Nguyen et al. 2015).

`fool` runs projected gradient descent on the cross-entropy (in the graph: one ORT run per step
for the whole batch, each row with its own class) within an L-inf or L2 ball of radius `eps`
around each photo, in [0, 1] pixel units (eps=4/255 is four grey levels), the result kept in
[0, 1]. Targeted (`target=`): lower -log p(target); untargeted: raise -log p(label), the label
being the model's own prediction on the clean photo. With `quantize` (default) the result is
rounded to the 8-bit grid inside the ball, so the PNG written fools the model as well as the
float image did; success is measured on what is returned, by a plain forward pass.

`fooling_images` grows images from noise (colour-decorrelated pixels, Adam) until the model gives
each its class with probability >= `confidence`.
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
    image_size,
    model_at_size,
    progress_bar,
    to_uint8,
    unit_images,
)
from .losses import cross_entropy, logit_margin
from .optim import Adam
from .param import PixelImage
from .space import ModelSpace

log = logging.getLogger("onnxlens")

NORMS = ("linf", "l2")


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64) - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def predict_images(model: Model, img: np.ndarray) -> np.ndarray:
    """Class probabilities (N, K) of [0, 1] images (N, C, H, W), by a plain forward pass."""
    size = (int(img.shape[2]), int(img.shape[3]))
    m = model_at_size(model, size)
    logits = m.predict(ModelSpace(m.preprocess.with_overrides(size=size)).to_model(img))
    return _softmax(np.asarray(logits))


def _project(x: np.ndarray, x0: np.ndarray, eps: float, norm: str) -> np.ndarray:
    d = x - x0
    if norm == "linf":
        d = np.clip(d, -eps, eps)
    else:
        n = np.sqrt((d.astype(np.float64) ** 2).reshape(len(d), -1).sum(1)).reshape(-1, 1, 1, 1)
        d = d * np.minimum(1.0, eps / np.maximum(n, 1e-12)).astype(np.float32)
    return np.clip(x0 + d, 0.0, 1.0).astype(np.float32)


def _quantize(x: np.ndarray, x0: np.ndarray, eps: float, norm: str) -> np.ndarray:
    """The 8-bit image nearest x that stays in the ball (x0 is on the grid when it came from a
    uint8 photo; L-inf radii k/255 keep the rounded image inside)."""
    q = np.round(x * 255.0) / 255.0
    if norm == "linf":
        lo, hi = np.ceil((x0 - eps) * 255 - 1e-4) / 255, np.floor((x0 + eps) * 255 + 1e-4) / 255
        q = np.clip(q, lo, hi)
    else:  # rounding can leave the ball by a hair: shrink toward x0 on the grid
        for _ in range(8):
            d = (q - x0).reshape(len(q), -1)
            over = np.sqrt((d.astype(np.float64) ** 2).sum(1)) > eps
            if not over.any():
                break
            q[over] = x0[over] + np.trunc((q[over] - x0[over]) * 255 * 0.98) / 255
    return np.clip(q, 0.0, 1.0).astype(np.float32)


def fool(
    model: Model,
    images: ImageLike | Sequence[ImageLike] | np.ndarray,
    target: int | Sequence[int] | None = None,
    eps: float = 4 / 255,
    norm: str = "linf",
    steps: int = 20,
    step_size: float | None = None,
    size: tuple[int, int] | None = None,
    loss: str = "ce",
    random_start: bool = False,
    quantize: bool = True,
    seed: int = 0,
    progress: bool = True,
) -> SynthesisResult:
    """Adversarial versions of `images` within the `norm` ball of radius `eps`: toward class
    `target` (one for all, or one per image) or, with target=None, away from the clean label.

    `step_size` defaults to 2.5 * eps / steps (Madry et al.). `loss`: "ce" (cross-entropy) or
    "margin" (Carlini & Wagner's logit margin, which does not saturate when the softmax is
    certain). One batch, one ORT run per step.
    Metrics per row: "label" (clean top-1), "prediction" (top-1 of the result), "success",
    "target_prob" (targeted) / "label_prob", "linf" and "l2" (of the perturbation). Curve:
    "loss", the loss at each step's input.
    """
    if norm not in NORMS:
        raise ConfigurationError(f"norm must be one of {NORMS}, got {norm!r}.")
    if not eps > 0:
        raise ConfigurationError(f"eps must be > 0 (in [0, 1] pixel units, e.g. 4/255), got {eps}.")
    if steps < 1:
        raise ConfigurationError(f"steps must be >= 1, got {steps}.")
    size = image_size(model, size)
    x0 = unit_images(model, images, size)
    n = len(x0)
    clean = predict_images(model, x0)
    labels = clean.argmax(1)
    targeted = target is not None
    if targeted:
        classes = [int(target)] * n if isinstance(target, int | np.integer) else list(target)  # type: ignore[arg-type]
        if len(classes) != n:
            raise ConfigurationError(f"{len(classes)} targets for {n} images; give one per image.")
    else:
        classes = [int(k) for k in labels]
    if loss == "ce":
        objective = cross_entropy(classes)
    elif loss == "margin":
        objective = -1.0 * logit_margin(classes)  # a loss: > 0 while the class is not the top-1
    else:
        raise ConfigurationError(f"loss must be 'ce' or 'margin', got {loss!r}.")
    f = LossFunction(model, objective, n, size)  # type: ignore[arg-type]
    sign = -1.0 if targeted else 1.0  # targeted: descend the loss of the target; else ascend
    alpha = float(step_size) if step_size is not None else 2.5 * eps / steps
    rng = np.random.default_rng(seed)
    x = x0.copy()
    if random_start:
        if norm == "linf":
            x = _project(x0 + rng.uniform(-eps, eps, x0.shape).astype(np.float32), x0, eps, norm)
        else:
            d = rng.standard_normal(x0.shape).astype(np.float32)
            d *= eps / np.sqrt((d**2).reshape(n, -1).sum(1)).reshape(-1, 1, 1, 1)
            x = _project(x0 + d, x0, eps, norm)
    hist_loss: list[np.ndarray] = []
    bar = progress_bar(progress, steps, "fool")
    interrupted = False
    try:
        for _ in range(steps):
            ce, g = f(x)
            g = sign * g
            if norm == "linf":
                step = np.sign(g)
            else:
                gn = np.sqrt((g.astype(np.float64) ** 2).reshape(n, -1).sum(1)).reshape(-1, 1, 1, 1)
                step = g / np.maximum(gn, 1e-12)
            x = _project(x + alpha * step.astype(np.float32), x0, eps, norm)
            hist_loss.append(ce)
            if bar is not None:
                bar.update(1)
    except KeyboardInterrupt:
        interrupted = True
        log.warning("onnxlens: fool interrupted after %d steps; keeping the images", len(hist_loss))
    finally:
        if bar is not None:
            bar.close()
    if quantize:
        x = _quantize(x, x0, eps, norm)
    probs = predict_images(model, x)
    pred = probs.argmax(1)
    ok = pred == np.asarray(classes) if targeted else pred != labels
    d = (x - x0).reshape(n, -1).astype(np.float64)
    metrics = {
        "label": labels.astype(np.float64),
        "prediction": pred.astype(np.float64),
        "prediction_prob": probs[np.arange(n), pred],
        "success": ok.astype(np.float64),
        "label_prob": probs[np.arange(n), labels],
        "linf": np.abs(d).max(1),
        "l2": np.sqrt((d * d).sum(1)),
    }
    if targeted:
        metrics["target"] = np.asarray(classes, np.float64)
        metrics["target_prob"] = probs[np.arange(n), classes]
    return SynthesisResult(
        images=to_uint8(x),
        images_float=x,
        history={"loss": np.array(hist_loss)},
        metrics=metrics,
        settings={
            "method": "fool",
            "targeted": targeted,
            "eps": eps,
            "norm": norm,
            "loss": loss,
            "steps": steps,
            "step_size": alpha,
            "size": list(size),
            "random_start": random_start,
            "quantize": quantize,
            "seed": seed,
        },
        interrupted=interrupted,
    )


def fooling_images(
    model: Model,
    classes: Sequence[int] | int,
    size: tuple[int, int] | None = None,
    steps: int = 200,
    lr: float = 0.05,
    confidence: float = 0.99,
    seed: int = 0,
    progress: bool = True,
) -> SynthesisResult:
    """Images grown from noise that the model gives class `classes[i]` with probability >=
    `confidence` (Nguyen et al. 2015): Adam on colour-decorrelated pixels minimising the
    cross-entropy; a row stops changing once it is confident. Metrics: "prob", "success"."""
    cs = [int(classes)] if isinstance(classes, int | np.integer) else [int(c) for c in classes]
    if not cs:
        raise ConfigurationError("fooling_images needs at least one class.")
    if steps < 1:
        raise ConfigurationError(f"steps must be >= 1, got {steps}.")
    size = image_size(model, size)
    n = len(cs)
    f = LossFunction(model, cross_entropy(cs), n, size)  # type: ignore[arg-type]
    p = PixelImage(n, f.space.channels, size, sd=0.5, rng=np.random.default_rng(seed))  # type: ignore[arg-type]
    opt = Adam(lr)
    hist: list[np.ndarray] = []
    bar = progress_bar(progress, steps, "fooling images")
    interrupted = False
    threshold = -np.log(confidence)
    try:
        for _ in range(steps):
            ce, g = f(p.image())
            hist.append(ce)
            done = ce <= threshold
            if done.all():
                break
            grad = p.backward(g)
            grad[done] = 0  # confident rows keep their image (Adam's moments decay only)
            before = p.params[done].copy()
            opt.step(p.params, -grad)
            p.params[done] = before
            if bar is not None:
                bar.update(1)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if bar is not None:
            bar.close()
    img = p.image()
    u8 = to_uint8(img)
    # measured on what is returned: the 8-bit images
    probs = predict_images(model, unit_images(model, u8, size))  # type: ignore[arg-type]
    prob = probs[np.arange(n), cs]
    return SynthesisResult(
        images=u8,
        images_float=img,
        history={"loss": np.array(hist)},
        metrics={
            "class": np.asarray(cs, np.float64),
            "prob": prob,
            "success": (prob >= confidence).astype(np.float64),
            "prediction": probs.argmax(1).astype(np.float64),
        },
        settings={
            "method": "fooling_images",
            "size": list(size),
            "steps": steps,
            "lr": lr,
            "confidence": confidence,
            "seed": seed,
        },
        interrupted=interrupted,
    )
