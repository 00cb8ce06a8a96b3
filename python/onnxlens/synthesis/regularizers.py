"""Image priors, subtracted from the objective with their weights: each has a value per image and
its exact gradient, on [0, 1] images (N, C, H, W).

- `lp(p)`: mean |x - 0.5|^p (keras-vis' `lp_norm_weight`; L1 with p=1, L2 with p=2);
- `total_variation(beta)`: mean of (dx^2 + dy^2)^(beta/2) over neighbouring pixels (Mahendran &
  Vedaldi 2015, Eq. 6; keras-vis' `tv_weight` with beta 2 uses the squared differences);
- `input_diff(reference)`: mean squared distance to a reference image (lucid).

Yosinski et al. 2015 ("Understanding Neural Networks Through Deep Visualization") regularise by
operating on the image after each step instead: `decay`, `blur` (a Gaussian blur every few
steps), `clip_norm` and `clip_contribution` (set the pixels of least norm or least contribution
to the objective to grey). These are `Projection`s; they act on raw pixels, so `visualize` runs
them with a plain pixel parameterisation (no sigmoid, no colour decorrelation), where the
parameters are the image.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigurationError

# Yosinski's image space is mean-subtracted; on [0, 1] images "zero" is mid grey.
GREY = 0.5


class Regularizer:
    weight: float = 1.0

    def value(self, img: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def grad(self, img: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __rmul__(self, w: float) -> Regularizer:
        self.weight = float(w) * self.weight
        return self


class Lp(Regularizer):
    def __init__(self, p: float = 2.0, center: float = 0.5, weight: float = 1.0) -> None:
        if p < 1:
            raise ConfigurationError(f"lp() needs p >= 1, got {p}.")
        self.p, self.center, self.weight = float(p), float(center), float(weight)

    def value(self, img: np.ndarray) -> np.ndarray:
        d = np.abs(img - self.center)
        return (d**self.p).reshape(img.shape[0], -1).mean(1)

    def grad(self, img: np.ndarray) -> np.ndarray:
        d = img - self.center
        g = self.p * np.sign(d) * np.abs(d) ** (self.p - 1)
        return (g / (img[0].size)).astype(np.float32)


class TotalVariation(Regularizer):
    """sum over pixels of (dx^2 + dy^2 + eps)^(beta/2), averaged per image; forward differences,
    the last row/column repeating (zero difference) as in Mahendran & Vedaldi's code."""

    def __init__(self, beta: float = 2.0, weight: float = 1.0, eps: float = 1e-8) -> None:
        self.beta, self.weight, self.eps = float(beta), float(weight), float(eps)

    def _diffs(self, img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dx = np.zeros_like(img)
        dy = np.zeros_like(img)
        dx[..., :, :-1] = img[..., :, 1:] - img[..., :, :-1]
        dy[..., :-1, :] = img[..., 1:, :] - img[..., :-1, :]
        return dx, dy

    def value(self, img: np.ndarray) -> np.ndarray:
        dx, dy = self._diffs(img)
        v = (dx * dx + dy * dy + self.eps) ** (self.beta / 2)
        return v.reshape(img.shape[0], -1).mean(1)

    def grad(self, img: np.ndarray) -> np.ndarray:
        dx, dy = self._diffs(img)
        s = dx * dx + dy * dy + self.eps
        k = self.beta * s ** (self.beta / 2 - 1)  # d/d(dx) of s^(b/2) is b * s^(b/2-1) * dx
        gx, gy = k * dx, k * dy
        g = np.zeros_like(img)
        # dx[j] = x[j+1] - x[j]: x[j+1] gets +gx[j], x[j] gets -gx[j]
        g[..., :, 1:] += gx[..., :, :-1]
        g[..., :, :-1] -= gx[..., :, :-1]
        g[..., 1:, :] += gy[..., :-1, :]
        g[..., :-1, :] -= gy[..., :-1, :]
        return (g / img[0].size).astype(np.float32)


class InputDiff(Regularizer):
    def __init__(self, reference: np.ndarray, weight: float = 1.0) -> None:
        self.reference = np.asarray(reference, np.float32)
        self.weight = float(weight)

    def value(self, img: np.ndarray) -> np.ndarray:
        d = img - self.reference
        return (d * d).reshape(img.shape[0], -1).mean(1)

    def grad(self, img: np.ndarray) -> np.ndarray:
        return (2 * (img - self.reference) / img[0].size).astype(np.float32)


def lp(p: float = 2.0, weight: float = 1.0) -> Regularizer:
    return Lp(p, weight=weight)


def total_variation(beta: float = 2.0, weight: float = 1.0) -> Regularizer:
    return TotalVariation(beta, weight)


def input_diff(reference: np.ndarray, weight: float = 1.0) -> Regularizer:
    return InputDiff(reference, weight)


class Projection:
    """An operation on the image after each optimiser step (Yosinski et al. 2015, Sec. 3).

    `apply(img, grad, step)` edits `img` (N, C, H, W) in place; `grad` is d objective / d image
    of the step just taken (the contribution clip needs it), `step` counts from 0."""

    def apply(self, img: np.ndarray, grad: np.ndarray, step: int) -> None:
        raise NotImplementedError


class Decay(Projection):
    """img <- grey + (1 - rate) (img - grey): L2 decay towards grey."""

    def __init__(self, rate: float) -> None:
        if not 0 <= rate < 1:
            raise ConfigurationError(f"decay needs 0 <= rate < 1, got {rate}.")
        self.rate = float(rate)

    def apply(self, img: np.ndarray, grad: np.ndarray, step: int) -> None:
        img -= GREY
        img *= 1.0 - self.rate
        img += GREY


class Blur(Projection):
    """A Gaussian blur of std `sigma` pixels every `every` steps (Yosinski: theta_b_width,
    theta_b_every); borders reflected."""

    def __init__(self, sigma: float, every: int = 4) -> None:
        if sigma <= 0 or every < 1:
            raise ConfigurationError(f"blur needs sigma > 0 and every >= 1, got {sigma}, {every}.")
        self.sigma, self.every = float(sigma), int(every)

    def apply(self, img: np.ndarray, grad: np.ndarray, step: int) -> None:
        if (step + 1) % self.every:
            return
        import cv2

        n, c, h, w = img.shape
        planes = img.reshape(n * c, h, w)
        for i in range(n * c):
            planes[i] = cv2.GaussianBlur(
                planes[i], (0, 0), self.sigma, borderType=cv2.BORDER_REFLECT_101
            )


def _clip_below(img: np.ndarray, score: np.ndarray, percentile: float) -> None:
    """Set to grey each pixel whose score (N, H, W) is below its image's percentile."""
    cut = np.percentile(score.reshape(score.shape[0], -1), percentile, axis=1)
    small = score < cut[:, None, None]
    img[np.broadcast_to(small[:, None], img.shape)] = GREY


class ClipNorm(Projection):
    """Pixels whose colour norm (distance from grey over channels) is in the lowest
    `percentile` % of their image are set to grey (Yosinski: theta_n_pct)."""

    def __init__(self, percentile: float) -> None:
        if not 0 <= percentile < 100:
            raise ConfigurationError(f"clip_norm needs a percentile in [0, 100), got {percentile}.")
        self.percentile = float(percentile)

    def apply(self, img: np.ndarray, grad: np.ndarray, step: int) -> None:
        _clip_below(img, np.sqrt(((img - GREY) ** 2).sum(1)), self.percentile)


class ClipContribution(Projection):
    """Pixels of least contribution, |sum over channels of (img - grey) * grad| (the linear
    estimate of how much the objective drops if the pixel is set to grey), in the lowest
    `percentile` % of their image, are set to grey (Yosinski: theta_c_pct)."""

    def __init__(self, percentile: float) -> None:
        if not 0 <= percentile < 100:
            raise ConfigurationError(
                f"clip_contribution needs a percentile in [0, 100), got {percentile}."
            )
        self.percentile = float(percentile)

    def apply(self, img: np.ndarray, grad: np.ndarray, step: int) -> None:
        _clip_below(img, np.abs(((img - GREY) * grad).sum(1)), self.percentile)


def decay(rate: float) -> Projection:
    return Decay(rate)


def blur(sigma: float, every: int = 4) -> Projection:
    return Blur(sigma, every)


def clip_norm(percentile: float) -> Projection:
    return ClipNorm(percentile)


def clip_contribution(percentile: float) -> Projection:
    return ClipContribution(percentile)
