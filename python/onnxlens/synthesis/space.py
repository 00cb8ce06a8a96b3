"""The model's own preprocessing as a linear map from [0, 1] images into model space.

Synthesis optimises images in [0, 1] (N, C, H, W), C = 3 RGB or 1 grey; the model sees what its
PreprocessSpec would make of the same picture as uint8: x = (255 * img * scale - mean) / std per
channel, in the model's channel order and layout. The map is affine, so its adjoint is a per-channel
scale (and the same reordering backwards). Grey models (1 channel) get grey images.
"""

from __future__ import annotations

import numpy as np

from ..data.preprocess import PreprocessSpec


class ModelSpace:
    """[0, 1] images (N, C, H, W) <-> model inputs, by a PreprocessSpec."""

    def __init__(self, spec: PreprocessSpec) -> None:
        self.spec = spec
        c = spec.channels
        mean = np.broadcast_to(np.asarray(spec.mean, np.float32), (c,))
        std = np.broadcast_to(np.asarray(spec.std, np.float32), (c,))
        # x = a * reorder(img) + b per channel; mean and std are in the model's channel order.
        self._a = (255.0 * spec.scale / std).astype(np.float32).reshape(1, c, 1, 1)
        self._b = (-mean / std).astype(np.float32).reshape(1, c, 1, 1)
        self.channels = c

    def _order(self, t: np.ndarray) -> np.ndarray:
        if self.spec.channel_order == "BGR" and t.shape[1] == 3:
            t = t[:, ::-1]
        return t

    def to_model(self, img: np.ndarray) -> np.ndarray:
        x = self._order(img) * self._a + self._b
        if self.spec.layout == "NHWC":
            x = x.transpose(0, 2, 3, 1)
        return np.ascontiguousarray(x, dtype=np.float32)

    def backward(self, g: np.ndarray) -> np.ndarray:
        """d objective / d image from d objective / d model input."""
        if self.spec.layout == "NHWC":
            g = g.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(self._order(g * self._a), dtype=np.float32)

    def to_image(self, x: np.ndarray) -> np.ndarray:
        """The inverse: model inputs back to [0, 1] images (N, C, H, W), unclipped."""
        if self.spec.layout == "NHWC":
            x = x.transpose(0, 3, 1, 2)
        return self._order((x - self._b) / self._a).astype(np.float32)
