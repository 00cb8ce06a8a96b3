"""Texture synthesis (Gatys et al. 2015) and neural style transfer (Gatys et al. 2016).

A texture matches the Gram matrices of a texture image on several layers, from noise, at any
output size (Gram matrices average over positions, so the texture image and the output need not
share a size). A style transfer adds a content loss on one layer. Both losses are in the graph
(`losses.style_loss`, `losses.content_loss`): one ORT run per optimiser evaluation.

Each layer's terms are divided by the mean square of its target (its Gram matrix, its content
features), so layers weigh alike whatever their scale and the same weights work on any model: a
style loss of 1 is an error as large as the target itself. `optimizer` is "lbfgs" (projected
L-BFGS in the pixel box [0, 1], Gatys' choice) or "adam" (projected onto [0, 1]).
Layers default to one activation per spatial stage, spread over the depth (`spread_layers`), the
content layer to the second-to-last stage (Gatys' conv4_2); both can be named.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..data.images import ImageLike
from ..errors import ConfigurationError
from ..model import Model
from .common import (
    LossFunction,
    ObjectiveValues,
    SynthesisResult,
    activations_of,
    default_content_layer,
    image_size,
    progress_bar,
    spread_layers,
    to_uint8,
    unit_images,
)
from .losses import content_loss, gram_matrix, style_loss
from .objectives import Objective
from .optim import Adam

log = logging.getLogger("onnxlens")

OPTIMIZERS = ("lbfgs", "adam")


class _Terms:
    """The style and content terms, the curves the methods record beside the optimiser's total:
    one forward ORT run (no gradient, float32) of the model with both losses appended, built at
    first use; `exact` gives the final metrics. Recomputing them in numpy from the activations (a float64 Gram per layer, einsum's own
    loop: BLAS threads stall on a busy machine) cost 350 ms a record at 512x512, more than the
    compiled step itself; the forward run costs a third of one."""

    def __init__(
        self,
        style_layers: list[str],
        grams: list[np.ndarray],
        weights: list[float],
        content_layer: str | None = None,
        phi0: np.ndarray | None = None,
    ) -> None:
        self.terms: dict[str, Objective] = {"style": style_loss(style_layers, grams, weights)}
        if content_layer is not None and phi0 is not None:
            # mean((Phi - Phi0)^2) / mean(Phi0^2)
            scale = 1.0 / max(float((np.asarray(phi0, np.float64) ** 2).mean()), 1e-30)
            self.terms["content"] = scale * content_loss(content_layer, phi0)
        self.style_layers, self.grams, self.weights = style_layers, grams, weights
        self.content_layer, self.phi0 = content_layer, phi0
        self._values: dict[tuple[int, int], ObjectiveValues] = {}

    def exact(self, model: Model, img: np.ndarray) -> dict[str, float]:
        """The same terms in float64 numpy from the activations (the final metrics: a result
        that matches its target to 1e-15 needs more than float32 Gram matrices)."""
        layers = list(self.style_layers) + ([self.content_layer] if self.content_layer else [])
        acts = activations_of(model, img, layers)
        s = 0.0
        for layer, g0, w in zip(self.style_layers, self.grams, self.weights, strict=True):
            g = gram_matrix(acts[layer], model.layout)[0]
            s += w * float(((g - g0) ** 2).mean())
        out = {"style": s}
        if self.content_layer is not None and self.phi0 is not None:
            a = acts[self.content_layer][0].astype(np.float64)
            out["content"] = float(((a - self.phi0) ** 2).mean() / (self.phi0**2).mean())
        return out

    def __call__(self, model: Model, img: np.ndarray) -> dict[str, float]:
        size = (int(img.shape[2]), int(img.shape[3]))
        if size not in self._values:
            self._values[size] = ObjectiveValues(model, self.terms, 1, size)
        return {k: float(v[0]) for k, v in self._values[size](img[:1]).items()}


def _style_targets(
    model: Model, style_img: np.ndarray, layers: list[str], weights: Sequence[float] | None
) -> tuple[list[np.ndarray], list[float]]:
    acts = activations_of(model, style_img, layers)
    grams = [gram_matrix(acts[la], model.layout)[0] for la in layers]
    if weights is None:
        weights = [1.0 / len(layers)] * len(layers)
    if len(weights) != len(layers):
        raise ConfigurationError(
            f"{len(layers)} style layers but {len(weights)} weights; give one weight per layer."
        )
    # relative: each layer's error over its target's mean square
    rel = [
        float(w) / max(float((g * g).mean()), 1e-30) for w, g in zip(weights, grams, strict=True)
    ]
    return grams, rel


def _optimize(
    f: LossFunction,
    x0: np.ndarray,
    optimizer: str,
    steps: int,
    lr: float,
    record: Callable[[np.ndarray], dict[str, float]],
    record_every: int,
    progress: bool,
    desc: str,
) -> tuple[np.ndarray, dict[str, list], bool]:
    """Minimise f over [0, 1] images from x0; `steps` loss evaluations (one ORT run each).
    Returns the best image seen, the curves, and whether Ctrl-C stopped it."""
    if optimizer not in OPTIMIZERS:
        raise ConfigurationError(f"unknown optimizer {optimizer!r}; use one of {OPTIMIZERS}.")
    if steps < 1:
        raise ConfigurationError(f"steps must be >= 1, got {steps}.")
    curves: dict[str, list] = {"loss": [], "step": []}
    best: dict[str, Any] = {"x": x0.copy(), "v": np.inf}
    bar = progress_bar(progress, steps, desc)
    count = [0]

    def evaluate(img: np.ndarray) -> tuple[float, np.ndarray]:
        v, g = f(img)
        value = float(v.sum())
        if not np.isfinite(value):
            raise ConfigurationError(
                f"the {desc} loss became non-finite; lower lr= or the style weight."
            )
        if value < best["v"]:
            best["v"], best["x"] = value, img.copy()
        k = count[0]
        curves["loss"].append(value)
        if k % record_every == 0:
            curves["step"].append(k)
            for name, val in record(img).items():
                curves.setdefault(name, []).append(val)
        count[0] += 1
        if bar is not None:
            bar.update(1)
        return value, g

    interrupted = False
    try:
        if optimizer == "adam":
            x = x0.copy()
            opt = Adam(lr)
            for k in range(steps):
                # lr decays geometrically to lr/10: Adam at a fixed rate hovers at a noise floor
                opt.lr = lr * 0.1 ** (k / max(1, steps - 1))
                _, g = evaluate(x)
                opt.step(x, -g)
                np.clip(x, 0.0, 1.0, out=x)
        else:
            lbfgs(evaluate, x0, steps)
    except KeyboardInterrupt:
        interrupted = True
        log.warning(
            "onnxlens: %s interrupted after %d evaluations; keeping the best image", desc, count[0]
        )
    finally:
        if bar is not None:
            bar.close()
    return best["x"], curves, interrupted


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """<a, b> of two flat float32 vectors, without BLAS and without a temporary: OpenBLAS'
    threaded dot on image-sized vectors waits on its threads (milliseconds each on a busy
    machine), and multiply-then-sum writes a vector as large as the image."""
    return float(np.einsum("i,i->", a, b))


def _axpy(x: np.ndarray, y: np.ndarray, a: float) -> None:
    """y += a * x in place, for flat float32 vectors: BLAS's saxpy, one pass and no temporary
    (numpy's multiply-then-add is two passes: 109 vs 35 us at 3x512x512)."""
    from scipy.linalg import blas

    out = blas.saxpy(x, y, a=a)
    if out is not y:  # a copy was made (a non-contiguous or non-float32 y): keep it
        y[...] = out


def lbfgs(
    evaluate: Callable[[np.ndarray], tuple[float, np.ndarray]],
    x0: np.ndarray,
    evaluations: int,
    history: int = 10,
    lower: float = 0.0,
    upper: float = 1.0,
) -> np.ndarray:
    """Projected L-BFGS (Nocedal & Wright, Algorithm 7.4, the two-loop recursion) within the box
    [lower, upper], with a backtracking (Armijo) line search: at most `evaluations` calls of
    `evaluate(x) -> (value, gradient)`. scipy's L-BFGS-B spends longer per iteration in its
    bound handling than the model's gradient costs on images, hence this one.

    The recursion works in place on float32 vectors (the images and gradients are float32, as
    in torch's LBFGS) with each pair's 1 / <y, s> kept: at 512x512 the allocating float64 version
    cost a sixth of the model's gradient per evaluation. `history` pairs: 10, scipy's L-BFGS-B
    default; 20 gave the same losses at 512x512 (style 0.02027 vs 0.02031 after 40 evaluations)
    and cost 7% more time, its pairs streaming through the caches the next run needs."""
    x = np.clip(x0, lower, upper).astype(np.float32)
    fx, g = evaluate(x)
    used = 1
    pairs: list[tuple[np.ndarray, np.ndarray, float]] = []  # (s, y, 1 / <y, s>), flat float32
    gamma = 1.0  # <s, y> / <y, y> of the newest pair: the initial inverse Hessian's scale
    q = np.empty(x.size, np.float32)
    first = True
    while used < evaluations:
        xf, gf = x.ravel(), np.ravel(g).astype(np.float32, copy=False)
        # variables held at a bound by their gradient stay out of the step (the active set),
        # else the projected quasi-Newton step stalls against the box
        free = ~(((xf <= lower) & (gf > 0)) | ((xf >= upper) & (gf < 0)))
        np.multiply(gf, free, out=q)
        alphas = []
        for s_, y_, rho in reversed(pairs):
            a = rho * _dot(s_, q)
            alphas.append(a)
            _axpy(y_, q, -a)
        if pairs:
            q *= np.float32(gamma)
        for (s_, y_, rho), a in zip(pairs, reversed(alphas), strict=True):
            _axpy(s_, q, a - rho * _dot(y_, q))
        q *= free
        d = np.negative(q).reshape(x.shape)
        # the first step has no curvature yet: move by 1/|g|_inf in pixels (torch's LBFGS uses
        # 1/|g|_1 for its first step, which is tiny on images)
        t = 0.05 / max(float(np.abs(gf).max()), 1e-30) if first else 1.0
        if _dot(gf, d.ravel()) >= 0:  # not a descent direction: restart
            pairs.clear()
            d = np.negative(gf * free).reshape(x.shape)
            t = 0.05 / max(float(np.abs(gf).max()), 1e-30)
        accepted = False
        while used < evaluations:
            x_new = x + np.float32(t) * d
            np.clip(x_new, lower, upper, out=x_new)
            f_new, g_new = evaluate(x_new)
            used += 1
            sv = (x_new - x).ravel()
            if f_new <= fx + 1e-4 * _dot(sv, gf):
                accepted = True
                break
            t *= 0.5
        if not accepted:  # out of evaluations; the caller keeps the best image it saw
            break
        first = False
        yv = np.ravel(g_new).astype(np.float32) - gf
        sy, yy = _dot(sv, yv), _dot(yv, yv)
        if sy > 1e-12 * yy:
            pairs.append((sv, yv, 1.0 / sy))
            gamma = sy / yy
            if len(pairs) > history:
                pairs.pop(0)
        x, fx, g = x_new, f_new, g_new
    return x


def _noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.random(shape).astype(np.float32)


def _curves(curves: dict[str, list]) -> dict[str, np.ndarray]:
    return {k: np.asarray(v, np.float64)[:, None] for k, v in curves.items()}


def texture(
    model: Model,
    texture_image: ImageLike | np.ndarray,
    size: tuple[int, int] | None = None,
    layers: Sequence[str] | None = None,
    weights: Sequence[float] | None = None,
    texture_size: tuple[int, int] | None = None,
    steps: int = 200,
    optimizer: str = "lbfgs",
    lr: float = 0.02,
    seed: int = 0,
    record_every: int = 10,
    progress: bool = True,
) -> SynthesisResult:
    """A texture of `size` (H, W) whose Gram matrices on `layers` match `texture_image`'s (at
    `texture_size`, default `size`), grown from uniform noise. `steps` loss evaluations;
    curves: "loss" per evaluation, "style" every `record_every`."""
    size = image_size(model, size)
    tsize = image_size(model, texture_size) if texture_size is not None else size
    names = list(layers) if layers else spread_layers(model, 5, "first")
    tex = unit_images(model, texture_image, tsize)[:1]
    grams, rel = _style_targets(model, tex, names, weights)
    f = LossFunction(model, style_loss(names, grams, rel), 1, size)
    terms = _Terms(names, grams, rel)
    x0 = _noise(np.random.default_rng(seed), f.image_shape)
    img, curves, interrupted = _optimize(
        f,
        x0,
        optimizer,
        steps,
        lr,
        lambda im: terms(f.model, im),
        record_every,
        progress,
        "texture",
    )
    final = terms.exact(f.model, img)
    return SynthesisResult(
        images=to_uint8(img),
        images_float=img,
        history=_curves(curves),
        metrics={
            "style": np.array([final["style"]]),
            "style_start": np.array([curves["style"][0]]),
        },
        settings={
            "method": "texture",
            "size": list(size),
            "texture_size": list(tsize),
            "layers": names,
            "weights": list(weights) if weights is not None else None,
            "steps": steps,
            "optimizer": optimizer,
            "seed": seed,
        },
        interrupted=interrupted,
    )


def style_transfer(
    model: Model,
    content: ImageLike | np.ndarray,
    style: ImageLike | np.ndarray,
    size: tuple[int, int] | None = None,
    content_layer: str | None = None,
    style_layers: Sequence[str] | None = None,
    style_weights: Sequence[float] | None = None,
    content_weight: float = 1.0,
    style_weight: float = 5.0,
    style_size: tuple[int, int] | None = None,
    init: str = "content",
    steps: int = 200,
    optimizer: str = "lbfgs",
    lr: float = 0.02,
    seed: int = 0,
    record_every: int = 10,
    progress: bool = True,
) -> SynthesisResult:
    """`content` painted in the style of `style` (Gatys 2016): minimise content_weight *
    content loss (on `content_layer`, relative to the content features' mean square) +
    style_weight * style loss (relative Gram errors on `style_layers`), from the content image
    (`init="content"`) or noise (`init="noise"`). Curves: "loss" per evaluation, "style" and
    "content" every `record_every`; metrics: the result's "style" and "content" losses, and
    "content_of_style" (the style image's own content loss against the content image)."""
    if init not in ("content", "noise"):
        raise ConfigurationError(f"init must be 'content' or 'noise', got {init!r}.")
    size = image_size(model, size)
    ssize = image_size(model, style_size) if style_size is not None else size
    names = list(style_layers) if style_layers else spread_layers(model, 5, "first")
    clayer = content_layer or default_content_layer(model)
    cimg = unit_images(model, content, size)[:1]
    simg = unit_images(model, style, ssize)[:1]
    grams, rel = _style_targets(model, simg, names, style_weights)
    phi0 = activations_of(model, cimg, [clayer])[clayer][0].astype(np.float64)
    c_scale = 1.0 / max(float((phi0**2).mean()), 1e-30)
    objective: Objective = float(content_weight) * c_scale * content_loss(clayer, phi0) + float(
        style_weight
    ) * style_loss(names, grams, rel)
    f = LossFunction(model, objective, 1, size)
    terms = _Terms(names, grams, rel, clayer, phi0)
    x0 = cimg.copy() if init == "content" else _noise(np.random.default_rng(seed), f.image_shape)
    img, curves, interrupted = _optimize(
        f, x0, optimizer, steps, lr, lambda im: terms(f.model, im), record_every, progress, "style"
    )
    final = terms.exact(f.model, img)
    style_as_is = unit_images(model, style, size)[:1]
    return SynthesisResult(
        images=to_uint8(img),
        images_float=img,
        history=_curves(curves),
        metrics={
            "style": np.array([final["style"]]),
            "content": np.array([final["content"]]),
            "content_of_style": np.array([terms.exact(f.model, style_as_is)["content"]]),
        },
        settings={
            "method": "style",
            "size": list(size),
            "style_size": list(ssize),
            "content_layer": clayer,
            "style_layers": names,
            "style_weights": list(style_weights) if style_weights is not None else None,
            "content_weight": content_weight,
            "style_weight": style_weight,
            "init": init,
            "steps": steps,
            "optimizer": optimizer,
            "seed": seed,
        },
        interrupted=interrupted,
    )
