"""Visualising intermediate activations: which layers to show, grids and per-layer statistics."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..graph import Layer
from ..graph.layout import to_nchw_perm
from ..model import Model
from ..render import channel_stats

# Ops whose outputs are what a unit "fires": preferred over the linear Conv output before them.
_ACTIVATION_OPS = {
    "Relu",
    "Clip",
    "HardSwish",
    "Sigmoid",
    "HardSigmoid",
    "LeakyRelu",
    "PRelu",
    "Elu",
    "Selu",
    "Gelu",
    "Mul",
    "Tanh",
    "Softplus",
}


def spatial_layers(model: Model) -> list[Layer]:
    """Rank-4 feature maps whose H and W (by each tensor's own layout, NCHW or NHWC) are known
    and > 1. Layout Transposes and no-op Casts (Keras exports wrap every conv in them) are copies
    of another map, not layers of their own."""
    return [
        la for la in model.layers if la.spatial and la.op not in ("Transpose", "Cast", "Identity")
    ]


def default_layers(model: Model, n: int = 4) -> list[str]:
    """`n` layers spread over the depth of the network (activation outputs where the model has
    them), from early edges to late object parts."""
    cands = spatial_layers(model)
    acts = (
        [la for la in cands if la.op in _ACTIVATION_OPS and la.op != "Mul"]
        or [la for la in cands if la.op == "Conv"]
        or cands
    )
    if not acts:
        return []
    if len(acts) <= n:
        return [la.name for la in acts]
    idx = np.linspace(0, len(acts) - 1, n).round().astype(int)
    return [acts[i].name for i in dict.fromkeys(idx.tolist())]


@dataclass
class LayerStats:
    layer: str
    shape: tuple[int, ...]
    sparsity: float  # fraction of values <= 0 (dead after a ReLU-like op)
    blank_channels: int  # channels constant over the whole batch (never fire / always saturated)
    mean: float
    max: float

    def row(self) -> list[object]:
        return [
            self.layer,
            "x".join(map(str, self.shape[1:])),
            f"{self.sparsity:.1%}",
            self.blank_channels,
            f"{self.mean:.3g}",
            f"{self.max:.3g}",
        ]


def to_nchw(a: np.ndarray, layout: str | None) -> np.ndarray:
    """A rank-4 tensor of `layout` ("NCHW", "NHWC" or any permutation of the letters; see
    `layer_layout`, decided per tensor) as (N, C, H, W); other ranks as they are."""
    if a.ndim != 4 or not layout:
        return a
    return np.ascontiguousarray(a.transpose(to_nchw_perm(layout)))


def layer_stats(name: str, acts: np.ndarray) -> LayerStats:
    """Sparsity (fraction <= 0), blank channels, mean and max of (N, C, H, W) activations."""
    st = channel_stats(acts)
    finite = np.asarray(acts, dtype=np.float32)
    finite = finite[np.isfinite(finite)]
    return LayerStats(
        layer=name,
        shape=tuple(acts.shape),
        sparsity=st["nonpositive"],
        blank_channels=st["blank_channels"],
        mean=float(finite.mean()) if finite.size else float("nan"),
        max=float(finite.max()) if finite.size else float("nan"),
    )


def top_channels(acts: np.ndarray, count: int) -> np.ndarray:
    """Indices of the `count` channels whose (C, H, W) maps vary most over space, in channel
    order: the ones worth looking at when a layer has hundreds. (Ranking by mean would pick
    channels saturated everywhere, which draw as flat tiles.)"""
    c = acts.shape[0]
    if count >= c:
        return np.arange(c)
    flat = np.where(np.isfinite(acts), acts, 0.0).reshape(c, -1)
    score = flat.std(axis=1)
    return np.sort(np.argsort(-score, kind="stable")[:count])


def select_channels(acts: np.ndarray, channels: int | Sequence[int] | None) -> np.ndarray:
    if channels is None:
        return np.arange(acts.shape[0])
    if isinstance(channels, int):
        return top_channels(acts, channels)
    return np.asarray(channels, dtype=int)
