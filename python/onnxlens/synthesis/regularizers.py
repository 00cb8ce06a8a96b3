"""Image priors, subtracted from the objective with their weights: each has a value per image and
its exact gradient, on [0, 1] images (N, C, H, W).

- `lp(p)`: mean |x - 0.5|^p (keras-vis' `lp_norm_weight`; L1 with p=1, L2 with p=2);
- `total_variation(beta)`: mean of (dx^2 + dy^2)^(beta/2) over neighbouring pixels (Mahendran &
  Vedaldi 2015, Eq. 6; keras-vis' `tv_weight` with beta 2 uses the squared differences);
- `input_diff(reference)`: mean squared distance to a reference image (lucid).
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigurationError


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
