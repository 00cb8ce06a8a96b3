"""Which layer a method explains, and layer tensors as (N, C, h, w) maps (NCHW, NHWC, tokens)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..errors import ConfigurationError, ShapeError
from ..graph.layers import Shape
from ..model import Model

# Ops after which a feature map has lost its spatial layout (global pooling, flattening).
_POOL_OPS = {
    "GlobalAveragePool",
    "GlobalMaxPool",
    "Flatten",
    "ReduceMean",
    "ReduceMax",
    "Reshape",
    "AveragePool",
}


def static_dims(shape: Shape) -> tuple[int, ...] | None:
    """The dims after the batch when all are known (positive ints), else None."""
    if shape is None:
        return None
    dims = tuple(d for d in shape[1:] if isinstance(d, int) and d > 0)
    return dims if len(dims) == len(shape) - 1 else None


def default_layer(model: Model) -> str:
    """The last spatial tensor before global pooling or flattening (Grad-CAM's usual choice);
    for token models (ViT), the last (N, tokens, C) tensor whose tokens form a square grid."""
    consumers: dict[str, list[str]] = {}
    for node in model.proto.graph.node:
        for i in node.input:
            consumers.setdefault(i, []).append(node.op_type)
    spatial = [la for la in model.layers if la.spatial or _nhwc_spatial(model, la.shape)]
    if spatial:
        pooled = [la for la in spatial if any(op in _POOL_OPS for op in consumers.get(la.name, []))]
        # The last map feeding a pooling/flatten op; the last spatial map when none does (FCN).
        pooled_last = [la for la in pooled if la.shape and la.shape[-1] not in (None,)]
        return (pooled_last or spatial)[-1].name
    tokens = [
        la
        for la in model.layers
        if la.shape is not None
        and len(la.shape) == 3
        and (dims := static_dims(la.shape)) is not None
        and token_grid(dims[0]) is not None
    ]
    if tokens:
        return tokens[-1].name
    raise ConfigurationError(
        "the model has no spatial (N, C, H, W) or token (N, T, C) layer to explain with a CAM; "
        "pass layer= (see `onnxlens inspect MODEL`) or use a gradient method (Saliency, IntegratedGradients)."
    )


def _nhwc_spatial(model: Model, shape: Shape) -> bool:
    return (
        model.layout == "NHWC"
        and shape is not None
        and len(shape) == 4
        and all(isinstance(d, int) and d > 1 for d in shape[1:3])
    )


def token_grid(tokens: int) -> tuple[int, int, int] | None:
    """(h, w, dropped leading tokens) for `tokens` when tokens or tokens - 1 is a square."""
    for drop in (0, 1):
        r = math.isqrt(tokens - drop)
        if r > 1 and r * r == tokens - drop:
            return r, r, drop
    return None


def to_maps(a: np.ndarray, model: Model, grid: tuple[int, int] | None = None) -> np.ndarray:
    """A layer tensor as (N, C, h, w): NCHW as is, NHWC transposed, tokens (N, T, C) reshaped to a
    grid with the leading (class/distillation) tokens dropped."""
    if a.ndim == 4:
        if model.layout == "NHWC" and a.shape[3] != a.shape[2] and a.shape[1] == a.shape[2]:
            return a.transpose(0, 3, 1, 2)
        return a
    if a.ndim == 3:
        t = a.shape[1]
        if grid is not None:
            h, w = grid
            drop = t - h * w
            if drop < 0:
                raise ShapeError(f"grid {grid} needs {h * w} tokens, the layer has {t}.")
        else:
            g = token_grid(t)
            if g is None:
                raise ConfigurationError(
                    f"cannot infer the token grid of a layer with {t} tokens (neither {t} nor {t - 1} is a "
                    "square); pass grid=(h, w) and the leading tokens beyond h*w are dropped."
                )
            h, w, drop = g
        return np.ascontiguousarray(
            a[:, drop:, :].reshape(a.shape[0], h, w, a.shape[2]).transpose(0, 3, 1, 2)
        )
    raise ShapeError(
        f"layer output of shape {a.shape} is not a feature map (N, C, H, W) or tokens (N, T, C); pick another layer."
    )


def announce(model: Model, method: str, layers: Sequence[str]) -> None:
    """Log the default layer a method picked, once per model and layer set. The record lives on
    the model: a process-wide set keyed by id(model) stayed silent for a new model that reused a
    collected one's address (a flaky test found it)."""
    model.notice_once(
        ("default-layer", method, *layers),
        "onnxlens: %s explains layer %s (pass layer= to choose another)",
        method,
        ", ".join(layers),
    )
