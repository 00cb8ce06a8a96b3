"""Occlusion (Zeiler & Fergus 2014): slide a window of `baseline` over the input and record how
much the target score drops; each pixel gets the mean drop of the windows covering it (captum's
Occlusion with a window spanning all channels)."""

from __future__ import annotations

import numpy as np

from ..errors import ConfigurationError
from ..model import Model
from ..model.targets import target_from_scores, target_score
from .base import Method, forward_batch_size, progress
from .explanation import Explanation

__all__ = ["Occlusion"]


def _starts(size: int, window: int, stride: int) -> list[int]:
    # captum's rule: ceil((size - window) / stride) + 1 positions, so the last window reaches the
    # border (clipped there) and every pixel is covered.
    return [k * stride for k in range(-(-(size - window) // stride) + 1)]


class Occlusion(Method):
    """Occlusion sensitivity. `window` and `stride` are (h, w) or one int in input pixels;
    `baseline` is the value the window is filled with in the model's input space (0 default).
    `raw` is (N, H, W): the mean score drop per pixel (positive = evidence for the target)."""

    name = "occlusion"

    def __init__(
        self,
        model: Model | str,
        window: int | tuple[int, int] = 16,
        stride: int | tuple[int, int] = 8,
        baseline: float = 0.0,
        output: str | None = None,
        progress: bool = True,
        batch_size: int | None = None,
    ) -> None:
        super().__init__(model, output=output, progress=progress, batch_size=batch_size)
        self.window = (window, window) if isinstance(window, int) else tuple(window)
        self.stride = (stride, stride) if isinstance(stride, int) else tuple(stride)
        if min(self.window) < 1 or min(self.stride) < 1:
            raise ConfigurationError(
                f"window and stride must be >= 1, got {self.window} and {self.stride}."
            )
        self.baseline = float(baseline)
        self._params.update(window=window, stride=stride, baseline=baseline)

    def _attribute(self, x: np.ndarray, target: object, output: str) -> Explanation:
        m = self.model
        nhwc = m.layout == "NHWC"
        h, w = self._input_size(x)
        wh, ww = self.window
        if wh > h or ww > w:
            raise ConfigurationError(
                f"occlusion window {self.window} is larger than the input {h, w}."
            )
        scores = self._scores(x, output)
        tgt = target_from_scores(target, scores)
        base_score = target_score(scores, tgt)
        positions = [
            (r, c) for r in _starts(h, wh, self.stride[0]) for c in _starts(w, ww, self.stride[1])
        ]
        n = x.shape[0]
        sess = m.plain_session()
        bs = forward_batch_size(m, self.batch_size)
        per = max(1, bs // n)
        total = np.zeros((n, h, w), np.float64)
        count = np.zeros((h, w), np.float64)
        for s in progress(range(0, len(positions), per), "Occlusion", self.progress):
            chunk = positions[s : s + per]
            batch = np.repeat(x[None], len(chunk), axis=0)  # (P, N, ...)
            for k, (r, c) in enumerate(chunk):
                if nhwc:
                    batch[k, :, r : r + wh, c : c + ww, :] = self.baseline
                else:
                    batch[k, ..., r : r + wh, c : c + ww] = self.baseline
            flat = batch.reshape(len(chunk) * n, *x.shape[1:])
            out = m.run_batched(sess, flat, [output], bs)[0]
            drop = base_score[None] - target_score(
                out, np.tile(tgt, (len(chunk),) + (1,) * (tgt.ndim - 1))
            ).reshape(len(chunk), n)
            for k, (r, c) in enumerate(chunk):
                total[:, r : r + wh, c : c + ww] += drop[k][:, None, None]
                count[r : r + wh, c : c + ww] += 1
        raw = (total / np.maximum(count, 1)).astype(np.float32)
        heat = self._to_heat(np.maximum(raw, 0), x)
        return Explanation(self.name, heat, raw, tgt, scores, output)
