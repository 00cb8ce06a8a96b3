"""Optimisers for gradient *ascent* on parameters held as numpy arrays.

`Adam` is lucid's default (learning rate 0.05); `RMSprop(normalize=True)` is keras-vis': the
gradient is L2-normalised per image before the RMSprop update, so the step size does not depend
on the objective's scale.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigurationError


class Optimizer:
    def step(self, params: np.ndarray, grad: np.ndarray, batch_axis: int = 0) -> None:
        """Update `params` in place to increase the objective whose gradient is `grad`;
        `batch_axis` is the axis of `params` that indexes images (1 for a spectrum's
        (re/im, N, ...) parameters), for optimisers that treat each image on its own."""
        raise NotImplementedError


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015, Algorithm 1) ascending the objective."""

    def __init__(
        self, lr: float = 0.05, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8
    ) -> None:
        if lr <= 0:
            raise ConfigurationError(f"the learning rate must be > 0, got {lr}.")
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self._m: np.ndarray | None = None
        self._v: np.ndarray | None = None
        self._tmp: np.ndarray | None = None
        self._t = 0

    def step(self, params: np.ndarray, grad: np.ndarray, batch_axis: int = 0) -> None:
        if self._m is None or self._m.shape != grad.shape:
            self._m = np.zeros_like(grad, dtype=np.float32)
            self._v = np.zeros_like(grad, dtype=np.float32)
            self._tmp = np.empty_like(grad, dtype=np.float32)
            self._t = 0
        assert self._v is not None and self._tmp is not None
        m, v, tmp = self._m, self._v, self._tmp
        self._t += 1
        # In place, one scratch buffer: the update runs every step on every parameter.
        m *= self.beta1
        np.multiply(grad, 1 - self.beta1, out=tmp)
        m += tmp
        v *= self.beta2
        np.multiply(grad, grad, out=tmp)
        tmp *= 1 - self.beta2
        v += tmp
        lr_t = self.lr * np.sqrt(1 - self.beta2**self._t) / (1 - self.beta1**self._t)
        np.sqrt(v, out=tmp)
        tmp += self.eps
        np.divide(m, tmp, out=tmp)
        tmp *= lr_t
        params += tmp


class RMSprop(Optimizer):
    """RMSprop (Tieleman & Hinton 2012) ascending the objective; with `normalize`, each image's
    gradient is scaled to unit L2 norm first (keras-vis' optimiser)."""

    def __init__(
        self, lr: float = 0.01, rho: float = 0.9, eps: float = 1e-7, normalize: bool = True
    ) -> None:
        if lr <= 0:
            raise ConfigurationError(f"the learning rate must be > 0, got {lr}.")
        self.lr, self.rho, self.eps, self.normalize = lr, rho, eps, normalize
        self._ms: np.ndarray | None = None

    def step(self, params: np.ndarray, grad: np.ndarray, batch_axis: int = 0) -> None:
        if self.normalize:  # one norm per image, over all its parameters
            axes = tuple(a for a in range(grad.ndim) if a != batch_axis) if grad.ndim > 1 else None
            norm = np.sqrt((grad * grad).sum(axis=axes, keepdims=True)) + 1e-12
            grad = grad / norm
        if self._ms is None or self._ms.shape != grad.shape:
            self._ms = np.zeros_like(grad, dtype=np.float32)
        self._ms *= self.rho
        self._ms += (1 - self.rho) * grad * grad
        params += (self.lr * grad / (np.sqrt(self._ms) + self.eps)).astype(np.float32)


def make_optimizer(name: str | Optimizer, lr: float | None = None) -> Optimizer:
    if isinstance(name, Optimizer):
        return name
    if name == "adam":
        return Adam(lr if lr is not None else 0.05)
    if name == "rmsprop":
        return RMSprop(lr if lr is not None else 0.01)
    raise ConfigurationError(f"unknown optimizer {name!r}; use 'adam' or 'rmsprop'.")
