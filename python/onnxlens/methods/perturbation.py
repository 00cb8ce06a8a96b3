"""Occlusion (Zeiler & Fergus 2014): slide a window filled with `baselines` over the input and
record how much the target score drops; each pixel gets the mean drop of the windows covering it
(captum's Occlusion with a window spanning all channels)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from ..errors import ConfigurationError
from ..model import Inputs, Model
from ..model.targets import Target, split_output_target, target_from_scores, target_score
from .base import Method, forward_batch_size, progress
from .explanation import Explanation

__all__ = ["Occlusion"]

Window = int | Sequence[int]


def _starts(size: int, window: int, stride: int) -> list[int]:
    # captum's rule: ceil((size - window) / stride) + 1 positions, so the last window reaches the
    # border (clipped there) and every pixel is covered.
    return [k * stride for k in range(-(-(size - window) // stride) + 1)]


def _pair(value: Window, name: str, channels: int | None) -> tuple[int, int]:
    """(h, w) from one int, (h, w), or captum's (C, h, w) whose C must span all channels (the
    window always does here; for strides the channel entry is irrelevant and ignored)."""
    v = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    if len(v) == 3:
        if name == "sliding_window_shapes" and channels is not None and v[0] != channels:
            raise ConfigurationError(
                f"sliding_window_shapes={tuple(v)}: the occlusion window spans all {channels} "
                "channels; pass (h, w), or (C, h, w) with C equal to the channel count."
            )
        v = v[1:]
    if len(v) != 2 or not all(isinstance(d, (int, np.integer)) and d >= 1 for d in v):
        raise ConfigurationError(
            f"{name} must be one int >= 1 or (h, w) of ints >= 1 in input pixels, got {value!r}."
        )
    return int(v[0]), int(v[1])


class Occlusion(Method):
    """Occlusion sensitivity: `Occlusion(model).attribute(inputs, target=None, output=None, *,
    sliding_window_shapes=16, strides=8, baselines=0.0, internal_batch_size=None)`.

    `sliding_window_shapes` and `strides` are (h, w) or one int in input pixels (captum's
    (C, h, w) is accepted too; the window always spans all channels). `baselines` is what the
    window is filled with, in the model's input space: a float or an array broadcastable to the
    inputs. `raw` is (N, H, W): the mean score drop per pixel (positive = evidence for the
    target)."""

    name = "occlusion"
    default_window: ClassVar[tuple[int, int]] = (16, 16)
    default_stride: ClassVar[tuple[int, int]] = (8, 8)

    def __init__(
        self,
        model: Model | str,
        output: str | None = None,
        progress: bool = True,
        *,
        window: Window | None = None,
        stride: Window | None = None,
        baseline: float | None = None,
        batch_size: int | None = None,
    ) -> None:
        super().__init__(model, output=output, progress=progress, batch_size=batch_size)
        if window is not None:
            _pair(window, "window", None)
        if stride is not None:
            _pair(stride, "stride", None)
        self._deprecated_init(
            window=("sliding_window_shapes", window),
            stride=("strides", stride),
            baseline=("baselines", baseline),
        )

    def attribute(
        self,
        inputs: Inputs,
        target: Target | str = None,
        output: str | None = None,
        *,
        sliding_window_shapes: Window | None = None,
        strides: Window | None = None,
        baselines: float | np.ndarray | None = None,
        internal_batch_size: int | None = None,
    ) -> Explanation:
        """Explain `inputs`; `target`, `output` and `internal_batch_size` as `Method.attribute`."""
        tgt, output = split_output_target(target, output)
        return self._run(
            inputs,
            tgt,
            output,
            internal_batch_size,
            sliding_window_shapes=self._knob(
                "sliding_window_shapes", sliding_window_shapes, self.default_window
            ),
            strides=self._knob("strides", strides, self.default_stride),
            baselines=self._knob("baselines", baselines, 0.0),
        )

    def _attribute(
        self,
        x: np.ndarray,
        target: object,
        output: str,
        bs: int | None,
        *,
        sliding_window_shapes: Window = default_window,
        strides: Window = default_stride,
        baselines: float | np.ndarray = 0.0,
        **knobs: Any,
    ) -> Explanation:
        m = self.model
        nhwc = m.layout == "NHWC"
        h, w = self._input_size(x)
        channels = int(x.shape[3] if nhwc else x.shape[1]) if x.ndim == 4 else None
        wh, ww = window = _pair(sliding_window_shapes, "sliding_window_shapes", channels)
        sh, sw = _pair(strides, "strides", channels)
        if wh > h or ww > w:
            raise ConfigurationError(f"occlusion window {window} is larger than the input {h, w}.")
        try:
            fill = np.broadcast_to(np.asarray(baselines, np.float32), x.shape)
        except ValueError:
            raise ConfigurationError(
                f"baselines of shape {np.shape(baselines)} do not broadcast to the inputs "
                f"{x.shape}; pass a float or an array shaped like the preprocessed inputs."
            ) from None
        scores = self._scores(x, output, bs)
        tgt = target_from_scores(target, scores)
        base_score = target_score(scores, tgt)
        positions = [(r, c) for r in _starts(h, wh, sh) for c in _starts(w, ww, sw)]
        n = x.shape[0]
        sess = m.plain_session()
        bs = forward_batch_size(m, bs)
        per = max(1, bs // n)
        total = np.zeros((n, h, w), np.float64)
        count = np.zeros((h, w), np.float64)
        for s in progress(range(0, len(positions), per), "Occlusion", self.progress):
            chunk = positions[s : s + per]
            batch = np.repeat(x[None], len(chunk), axis=0)  # (P, N, ...)
            for k, (r, c) in enumerate(chunk):
                win: tuple[Any, ...]
                if nhwc:
                    win = (slice(None), slice(r, r + wh), slice(c, c + ww), slice(None))
                else:
                    win = (Ellipsis, slice(r, r + wh), slice(c, c + ww))
                batch[k][win] = fill[win]
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
