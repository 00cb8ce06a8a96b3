"""Gradient attributions on the input: saliency, SmoothGrad, gradient x input, integrated
gradients, guided backprop, deconvnet and guided Grad-CAM.

`raw` is input-shaped (N, C, H, W) (the model's layout); `heatmap` reduces it over channels
(sum of absolute values; saliency takes the channel maximum, as Simonyan et al.).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from ..errors import ConfigurationError
from ..model import Inputs, Model
from ..model.targets import (
    Target,
    cotangent_for,
    split_output_target,
    target_from_scores,
    target_score,
)
from .base import Method, progress, vjp_batch_size
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

    def _target(
        self, x: np.ndarray, target: object, output: str, bs: int | None
    ) -> tuple[np.ndarray, np.ndarray]:
        scores = self._scores(x, output, bs)
        return scores, target_from_scores(target, scores)

    def _grad(
        self,
        x: np.ndarray,
        tgt: np.ndarray,
        scores_shape: tuple[int, ...],
        output: str,
        bs: int | None,
        rules: str | None = None,
    ) -> np.ndarray:
        cot = cotangent_for(tgt, (x.shape[0], *scores_shape[1:]))
        return np.asarray(
            self.model.gradient(x, cot, output=output, rules=rules or self.rules, batch_size=bs)
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

    def _attribute(
        self, x: np.ndarray, target: object, output: str, bs: int | None, **knobs: Any
    ) -> Explanation:
        scores, tgt = self._target(x, target, output, bs)
        return self._explain(self._grad(x, tgt, scores.shape, output, bs), tgt, scores, output, x)


class Saliency(_GradientMethod):
    """Vanilla gradient (Simonyan et al. 2014). `abs`: raw = |gradient| (captum's default)."""

    name = "saliency"

    def __init__(
        self,
        model: Model | str,
        abs: bool = True,
        output: str | None = None,
        progress: bool = True,
        *,
        batch_size: int | None = None,
    ) -> None:
        super().__init__(model, output=output, progress=progress, batch_size=batch_size)
        self.abs = abs
        self._params["abs"] = abs

    def _attribute(
        self, x: np.ndarray, target: object, output: str, bs: int | None, **knobs: Any
    ) -> Explanation:
        scores, tgt = self._target(x, target, output, bs)
        g = self._grad(x, tgt, scores.shape, output, bs)
        raw = np.abs(g) if self.abs else g
        axis = 3 if self.model.layout == "NHWC" else 1
        heat = self._to_heat(np.abs(raw).max(axis=axis), x)
        return Explanation(self.name, heat, raw, tgt, scores, output)


class InputXGradient(_GradientMethod):
    """Gradient x input (Shrikumar et al. 2016)."""

    name = "ixg"

    def _attribute(
        self, x: np.ndarray, target: object, output: str, bs: int | None, **knobs: Any
    ) -> Explanation:
        scores, tgt = self._target(x, target, output, bs)
        return self._explain(
            x * self._grad(x, tgt, scores.shape, output, bs), tgt, scores, output, x
        )


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
    """SmoothGrad (Smilkov et al. 2017): gradients averaged over noisy copies of the input,
    `SmoothGrad(model, *, magnitude=True, seed=0).attribute(inputs, target=None, output=None, *,
    nt_samples=25, stdevs=None, noise_level=None, internal_batch_size=None)`.

    `nt_samples`: noisy copies per input (captum's NoiseTunnel name). The Gaussian noise's std is
    either `stdevs`, absolute in the model's input space (captum's meaning), or `noise_level` x
    (max - min) of each input, relative to the input's range (the paper's "noise level"; default
    0.15 when neither is given); pass one of the two. `magnitude` (constructor): average
    |gradient| (captum's NoiseTunnel over Saliency), else the signed gradient. `seed`
    (constructor): the noise generator's seed, so repeated calls draw the same noise.
    """

    name = "smoothgrad"
    default_nt_samples: ClassVar[int] = 25
    default_noise_level: ClassVar[float] = 0.15

    def __init__(
        self,
        model: Model | str,
        output: str | None = None,
        progress: bool = True,
        *,
        magnitude: bool = True,
        seed: int | None = 0,
        samples: int | None = None,
        noise_level: float | None = None,
        batch_size: int | None = None,
    ) -> None:
        super().__init__(model, output=output, progress=progress, batch_size=batch_size)
        if samples is not None:
            _check_samples(samples, "samples")
        self._deprecated_init(
            samples=("nt_samples", samples), noise_level=("noise_level", noise_level)
        )
        self.magnitude, self.seed = magnitude, seed
        self._params.update(magnitude=magnitude, seed=seed)

    def attribute(
        self,
        inputs: Inputs,
        target: Target | str = None,
        output: str | None = None,
        *,
        nt_samples: int | None = None,
        stdevs: float | None = None,
        noise_level: float | None = None,
        internal_batch_size: int | None = None,
    ) -> Explanation:
        """Explain `inputs`; `target`, `output` and `internal_batch_size` as `Method.attribute`."""
        tgt, output = split_output_target(target, output)
        n = _check_samples(self._knob("nt_samples", nt_samples, self.default_nt_samples))
        if stdevs is not None and noise_level is not None:
            raise ConfigurationError(
                "pass stdevs= (absolute noise std) or noise_level= (relative to each input's "
                "range), not both."
            )
        if stdevs is None:
            noise_level = self._knob("noise_level", noise_level, self.default_noise_level)
        for what, v in (("stdevs", stdevs), ("noise_level", noise_level)):
            if v is not None and not float(v) >= 0:
                raise ConfigurationError(f"{what} must be >= 0, got {v!r}.")
        return self._run(
            inputs,
            tgt,
            output,
            internal_batch_size,
            nt_samples=n,
            stdevs=stdevs,
            noise_level=noise_level,
        )

    def _attribute(
        self,
        x: np.ndarray,
        target: object,
        output: str,
        bs: int | None,
        *,
        nt_samples: int = default_nt_samples,
        stdevs: float | None = None,
        noise_level: float | None = default_noise_level,
        **knobs: Any,
    ) -> Explanation:
        scores, tgt = self._target(x, target, output, bs)
        rng = np.random.default_rng(self.seed)
        n = x.shape[0]
        if stdevs is not None:
            sigma = np.full((n, *[1] * (x.ndim - 1)), float(stdevs), np.float32)
        else:
            span = (x.reshape(n, -1).max(1) - x.reshape(n, -1).min(1)).reshape(
                n, *[1] * (x.ndim - 1)
            )
            sigma = float(noise_level or 0.0) * span
        total = np.zeros_like(x)
        chunk = max(1, vjp_batch_size(self.model, bs, x.shape) // max(1, n))
        for s in progress(range(0, nt_samples, chunk), "SmoothGrad", self.progress):
            k = min(chunk, nt_samples - s)
            noisy = (
                x[None] + sigma[None] * rng.standard_normal((k, *x.shape)).astype(np.float32)
            ).reshape(k * n, *x.shape[1:])
            g = self._grad(
                noisy.astype(np.float32),
                np.tile(tgt, (k,) + (1,) * (tgt.ndim - 1)),
                scores.shape,
                output,
                bs,
            )
            g = g.reshape(k, *x.shape)
            total += (np.abs(g) if self.magnitude else g).sum(0)
        return self._explain(total / nt_samples, tgt, scores, output, x)


def _check_samples(n: Any, name: str = "nt_samples") -> int:
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ConfigurationError(f"{name} must be an int >= 1, got {n!r}.")
    return int(n)


def _ig_points(steps: int, method: str) -> tuple[np.ndarray, np.ndarray]:
    """(alphas, weights) of an integration rule on [0, 1] (captum's names)."""
    if not isinstance(steps, (int, np.integer)) or isinstance(steps, bool) or steps < 1:
        raise ConfigurationError(f"n_steps must be an int >= 1, got {steps!r}.")
    if method == "riemann_left":
        return np.arange(steps) / steps, np.full(steps, 1 / steps)
    if method == "riemann_right":
        return np.arange(1, steps + 1) / steps, np.full(steps, 1 / steps)
    if method == "riemann_middle":
        return (np.arange(steps) + 0.5) / steps, np.full(steps, 1 / steps)
    if method == "riemann_trapezoid":
        if steps < 2:
            raise ConfigurationError("riemann_trapezoid needs n_steps >= 2.")
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
    along the straight path from the baseline x' to x, `IntegratedGradients(model)
    .attribute(inputs, target=None, output=None, *, baselines=0.0, n_steps=50,
    method="gausslegendre", internal_batch_size=None)`.

    `baselines`: x', a float or an array broadcastable to the inputs, in the model's input space
    (after preprocessing). `n_steps` points of the integration rule `method` (captum's names and
    default: gausslegendre; also riemann_left, riemann_right, riemann_middle, riemann_trapezoid).
    The n_steps x N gradient passes run in chunks under the memory bound. `extras["delta"]` is
    the completeness gap sum(attributions) - (f(x) - f(x')) per sample, `extras
    ["baseline_scores"]` f(x')."""

    name = "ig"
    default_n_steps: ClassVar[int] = 50
    default_method: ClassVar[str] = "gausslegendre"

    def __init__(
        self,
        model: Model | str,
        output: str | None = None,
        progress: bool = True,
        *,
        steps: int | None = None,
        method: str | None = None,
        baseline: float | np.ndarray | None = None,
        batch_size: int | None = None,
    ) -> None:
        super().__init__(model, output=output, progress=progress, batch_size=batch_size)
        if steps is not None or method is not None:
            _ig_points(
                self.default_n_steps if steps is None else steps,
                self.default_method if method is None else method,
            )
        self._deprecated_init(
            steps=("n_steps", steps), method=("method", method), baseline=("baselines", baseline)
        )

    def attribute(
        self,
        inputs: Inputs,
        target: Target | str = None,
        output: str | None = None,
        *,
        baselines: float | np.ndarray | None = None,
        n_steps: int | None = None,
        method: str | None = None,
        internal_batch_size: int | None = None,
    ) -> Explanation:
        """Explain `inputs`; `target`, `output` and `internal_batch_size` as `Method.attribute`."""
        tgt, output = split_output_target(target, output)
        n_steps = self._knob("n_steps", n_steps, self.default_n_steps)
        method = self._knob("method", method, self.default_method)
        _ig_points(n_steps, method)  # bad settings fail before any model run
        return self._run(
            inputs,
            tgt,
            output,
            internal_batch_size,
            baselines=self._knob("baselines", baselines, 0.0),
            n_steps=n_steps,
            method=method,
        )

    def _attribute(
        self,
        x: np.ndarray,
        target: object,
        output: str,
        bs: int | None,
        *,
        baselines: float | np.ndarray = 0.0,
        n_steps: int = default_n_steps,
        method: str = default_method,
        **knobs: Any,
    ) -> Explanation:
        scores, tgt = self._target(x, target, output, bs)
        n = x.shape[0]
        try:
            base = np.broadcast_to(np.asarray(baselines, np.float32), x.shape).astype(np.float32)
        except ValueError:
            raise ConfigurationError(
                f"baselines of shape {np.shape(baselines)} do not broadcast to the inputs "
                f"{x.shape}; pass a float or an array shaped like the preprocessed inputs."
            ) from None
        alphas, weights = _ig_points(n_steps, method)
        diff = x - base
        total = np.zeros_like(x, dtype=np.float64)
        chunk = max(1, vjp_batch_size(self.model, bs, x.shape) // max(1, n))
        for s in progress(range(0, len(alphas), chunk), "Integrated gradients", self.progress):
            a = alphas[s : s + chunk].astype(np.float32)
            w = weights[s : s + chunk]
            pts = (base[None] + a.reshape(-1, *[1] * x.ndim) * diff[None]).reshape(
                len(a) * n, *x.shape[1:]
            )
            g = self._grad(
                pts, np.tile(tgt, (len(a),) + (1,) * (tgt.ndim - 1)), scores.shape, output, bs
            )
            total += np.tensordot(w, g.reshape(len(a), *x.shape).astype(np.float64), axes=1)
        raw = (diff * total).astype(np.float32)
        f_base = target_score(self._scores(base, output, bs), tgt)
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
        *,
        batch_size: int | None = None,
    ) -> None:
        super().__init__(model, output=output, progress=progress, batch_size=batch_size)
        self.gradcam = GradCAM(self.model, layer=layer, output=output, progress=progress)
        self._params["layer"] = layer

    def _attribute(
        self, x: np.ndarray, target: object, output: str, bs: int | None, **knobs: Any
    ) -> Explanation:
        cam = self.gradcam._attribute(x, target, output, bs)
        guided = self._grad(x, cam.target, cam.scores.shape, output, bs, rules="guided")
        axis = 3 if self.model.layout == "NHWC" else 1
        raw = guided * np.expand_dims(cam.heatmap, axis)
        exp = self._explain(raw, cam.target, cam.scores, output, x, gradcam=cam.heatmap)
        exp.layers = cam.layers
        return exp
