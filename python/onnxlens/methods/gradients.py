"""Gradient attributions on the input: saliency, SmoothGrad, gradient x input, integrated
gradients, guided backprop, deconvnet and guided Grad-CAM.

`raw` is input-shaped (N, C, H, W) (the model's layout); `heatmap` reduces it over channels
(sum of absolute values; saliency takes the channel maximum, as Simonyan et al.).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from ..errors import ConfigurationError
from ..model import Model
from ..model.targets import cotangent_for, target_from_scores, target_score
from .base import Method, forward_batch_size, progress
from .cam import GradCAM
from .explanation import Explanation

__all__ = [
    "Deconvolution",
    "GuidedBackprop",
    "GuidedGradCAM",
    "InputXGradient",
    "IntegratedGradients",
    "Saliency",
    "SmoothGrad",
]


class _GradientMethod(Method):
    """Shared: the target's score, its cotangent, and input gradients in memory-bounded chunks."""

    rules: ClassVar[str | None] = None

    def _target(self, x: np.ndarray, target: object, output: str) -> tuple[np.ndarray, np.ndarray]:
        scores = self._scores(x, output)
        return scores, target_from_scores(target, scores)

    def _grad(
        self,
        x: np.ndarray,
        tgt: np.ndarray,
        scores_shape: tuple[int, ...],
        output: str,
        rules: str | None = None,
    ) -> np.ndarray:
        cot = cotangent_for(tgt, (x.shape[0], *scores_shape[1:]))
        return np.asarray(
            self.model.gradient(
                x, cot, output=output, rules=rules or self.rules, batch_size=self.batch_size
            )
        )

    def _explain(
        self,
        raw: np.ndarray,
        tgt: np.ndarray,
        scores: np.ndarray,
        output: str,
        x: np.ndarray,
        **extras: object,
    ) -> Explanation:
        heat = self._to_heat(self._channel_reduce(raw), x)
        return Explanation(self.name, heat, raw, tgt, scores, output, extras=dict(extras))

    def _attribute(self, x: np.ndarray, target: object, output: str) -> Explanation:
        scores, tgt = self._target(x, target, output)
        return self._explain(self._grad(x, tgt, scores.shape, output), tgt, scores, output, x)


class Saliency(_GradientMethod):
    """Vanilla gradient (Simonyan et al. 2014). `abs`: raw = |gradient| (captum's default)."""

    name = "saliency"

    def __init__(
        self,
        model: Model | str,
        abs: bool = True,
        output: str | None = None,
        progress: bool = True,
        batch_size: int | None = None,
    ) -> None:
        super().__init__(model, output=output, progress=progress, batch_size=batch_size)
        self.abs = abs
        self._params["abs"] = abs

    def _attribute(self, x: np.ndarray, target: object, output: str) -> Explanation:
        scores, tgt = self._target(x, target, output)
        g = self._grad(x, tgt, scores.shape, output)
        raw = np.abs(g) if self.abs else g
        axis = 3 if self.model.layout == "NHWC" else 1
        heat = self._to_heat(np.abs(raw).max(axis=axis), x)
        return Explanation(self.name, heat, raw, tgt, scores, output)


class InputXGradient(_GradientMethod):
    """Gradient x input (Shrikumar et al. 2016)."""

    name = "ixg"

    def _attribute(self, x: np.ndarray, target: object, output: str) -> Explanation:
        scores, tgt = self._target(x, target, output)
        return self._explain(x * self._grad(x, tgt, scores.shape, output), tgt, scores, output, x)


class GuidedBackprop(_GradientMethod):
    """Guided backpropagation (Springenberg et al. 2015): ReLU backward passes only positive
    gradients where the input was positive."""

    name = "guided"
    rules = "guided"


class Deconvolution(_GradientMethod):
    """Deconvnet (Zeiler & Fergus 2014): ReLU backward passes positive gradients, whatever the input."""

    name = "deconvnet"
    rules = "deconvnet"


class SmoothGrad(_GradientMethod):
    """SmoothGrad (Smilkov et al. 2017): gradients averaged over `samples` noisy copies of the
    input, noise std = `noise_level` x (max - min) of each input. `magnitude`: average |gradient|
    (captum's NoiseTunnel over Saliency), else the signed gradient."""

    name = "smoothgrad"

    def __init__(
        self,
        model: Model | str,
        samples: int = 25,
        noise_level: float = 0.15,
        magnitude: bool = True,
        seed: int | None = 0,
        output: str | None = None,
        progress: bool = True,
        batch_size: int | None = None,
    ) -> None:
        super().__init__(model, output=output, progress=progress, batch_size=batch_size)
        if samples < 1:
            raise ConfigurationError(f"samples must be >= 1, got {samples}.")
        self.samples, self.noise_level, self.magnitude, self.seed = (
            samples,
            noise_level,
            magnitude,
            seed,
        )
        self._params.update(
            samples=samples, noise_level=noise_level, magnitude=magnitude, seed=seed
        )

    def _attribute(self, x: np.ndarray, target: object, output: str) -> Explanation:
        scores, tgt = self._target(x, target, output)
        rng = np.random.default_rng(self.seed)
        n = x.shape[0]
        span = (x.reshape(n, -1).max(1) - x.reshape(n, -1).min(1)).reshape(n, *[1] * (x.ndim - 1))
        sigma = self.noise_level * span
        total = np.zeros_like(x)
        chunk = max(1, forward_batch_size(self.model, self.batch_size) // max(1, n))
        for s in progress(range(0, self.samples, chunk), "SmoothGrad", self.progress):
            k = min(chunk, self.samples - s)
            noisy = (
                x[None] + sigma[None] * rng.standard_normal((k, *x.shape)).astype(np.float32)
            ).reshape(k * n, *x.shape[1:])
            g = self._grad(
                noisy.astype(np.float32),
                np.tile(tgt, (k,) + (1,) * (tgt.ndim - 1)),
                scores.shape,
                output,
            )
            g = g.reshape(k, *x.shape)
            total += (np.abs(g) if self.magnitude else g).sum(0)
        return self._explain(total / self.samples, tgt, scores, output, x)


def _ig_points(steps: int, method: str) -> tuple[np.ndarray, np.ndarray]:
    """(alphas, weights) of an integration rule on [0, 1] (captum's names)."""
    if method == "riemann_left":
        return np.arange(steps) / steps, np.full(steps, 1 / steps)
    if method == "riemann_right":
        return np.arange(1, steps + 1) / steps, np.full(steps, 1 / steps)
    if method == "riemann_middle":
        return (np.arange(steps) + 0.5) / steps, np.full(steps, 1 / steps)
    if method == "riemann_trapezoid":
        if steps < 2:
            raise ConfigurationError("riemann_trapezoid needs steps >= 2.")
        a = np.linspace(0, 1, steps)
        w = np.full(steps, 1 / (steps - 1))
        w[[0, -1]] /= 2
        return a, w
    if method == "gausslegendre":
        t, w = np.polynomial.legendre.leggauss(steps)
        return (t + 1) / 2, w / 2
    raise ConfigurationError(
        f"unknown integration method {method!r}; use riemann_left, riemann_right, riemann_middle, riemann_trapezoid or gausslegendre."
    )


class IntegratedGradients(_GradientMethod):
    """Integrated gradients (Sundararajan et al. 2017, Eq. 1): (x - x') * integral of the gradient
    along the straight path from the baseline x' (default zeros, in the model's input space) to x.

    `steps` points of the rule `method` (captum's names; default gausslegendre like captum). The
    steps x N gradient passes run in chunks under the memory bound. `extras["delta"]` is the
    completeness gap sum(attributions) - (f(x) - f(x')) per sample."""

    name = "ig"

    def __init__(
        self,
        model: Model | str,
        steps: int = 50,
        method: str = "gausslegendre",
        baseline: float | np.ndarray = 0.0,
        output: str | None = None,
        progress: bool = True,
        batch_size: int | None = None,
    ) -> None:
        super().__init__(model, output=output, progress=progress, batch_size=batch_size)
        _ig_points(steps, method)
        self.steps, self.method, self.baseline = steps, method, baseline
        self._params.update(steps=steps, method=method, baseline=baseline)

    def _attribute(self, x: np.ndarray, target: object, output: str) -> Explanation:
        scores, tgt = self._target(x, target, output)
        n = x.shape[0]
        base = np.broadcast_to(np.asarray(self.baseline, np.float32), x.shape).astype(np.float32)
        alphas, weights = _ig_points(self.steps, self.method)
        diff = x - base
        total = np.zeros_like(x, dtype=np.float64)
        chunk = max(1, forward_batch_size(self.model, self.batch_size) // max(1, n))
        for s in progress(range(0, len(alphas), chunk), "Integrated gradients", self.progress):
            a = alphas[s : s + chunk].astype(np.float32)
            w = weights[s : s + chunk]
            pts = (base[None] + a.reshape(-1, *[1] * x.ndim) * diff[None]).reshape(
                len(a) * n, *x.shape[1:]
            )
            g = self._grad(
                pts, np.tile(tgt, (len(a),) + (1,) * (tgt.ndim - 1)), scores.shape, output
            )
            total += np.tensordot(w, g.reshape(len(a), *x.shape).astype(np.float64), axes=1)
        raw = (diff * total).astype(np.float32)
        f_base = target_score(self._scores(base, output), tgt)
        delta = raw.reshape(n, -1).sum(1) - (target_score(scores, tgt) - f_base)
        return self._explain(raw, tgt, scores, output, x, delta=delta, baseline_scores=f_base)


class GuidedGradCAM(_GradientMethod):
    """Guided Grad-CAM (Selvaraju et al. 2017): guided backprop x the Grad-CAM map upsampled to
    the input (captum's product of the guided gradients and the interpolated layer map)."""

    name = "guidedgradcam"
    needs_layer = True

    def __init__(
        self,
        model: Model | str,
        layer: str | Sequence[str] | None = None,
        output: str | None = None,
        progress: bool = True,
        batch_size: int | None = None,
    ) -> None:
        super().__init__(model, output=output, progress=progress, batch_size=batch_size)
        self.gradcam = GradCAM(
            self.model, layer=layer, output=output, progress=progress, batch_size=batch_size
        )
        self._params["layer"] = layer

    def _attribute(self, x: np.ndarray, target: object, output: str) -> Explanation:
        cam = self.gradcam._attribute(x, target, output)
        guided = self._grad(x, cam.target, cam.scores.shape, output, rules="guided")
        axis = 3 if self.model.layout == "NHWC" else 1
        raw = guided * np.expand_dims(cam.heatmap, axis)
        exp = self._explain(raw, cam.target, cam.scores, output, x, gradcam=cam.heatmap)
        exp.layers = cam.layers
        return exp
