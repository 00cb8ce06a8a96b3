"""Which layer a method explains, and layer tensors as (N, C, h, w) maps (NCHW, NHWC, tokens)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..errors import ConfigurationError, ShapeError
from ..graph.layers import Shape
from ..graph.layout import to_nchw_perm
from ..model import Model

# Ops that move or resample a feature map without computing new features: the default CAM
# layer walks back through them from the final spatial reduction to the last conv feature map.
_PASS_BACK_OPS = {
    "MaxPool",
    "AveragePool",
    "LpPool",
    "Transpose",
    "Cast",
    "Identity",
    "Dropout",
    "Pad",
}
# Ops that read a feature map's shape, not its values: never its "reduction".
_SHAPE_OPS = {"Shape", "Size"}


def static_dims(shape: Shape) -> tuple[int, ...] | None:
    """The dims after the batch when all are known (positive ints), else None."""
    if shape is None:
        return None
    dims = tuple(d for d in shape[1:] if isinstance(d, int) and d > 0)
    return dims if len(dims) == len(shape) - 1 else None


def layer_layout(model: Model, tensor: str) -> str | None:
    """The axis letters ("NCHW", "NHWC", ...) of a rank-4 tensor (`graph.layout`, decided per
    tensor: Keras exports hold both); the model input's layout for the input; None when unknown."""
    la = model.layer(tensor)
    if la.layout is not None:
        return la.layout
    if any(i.name == la.name for i in model.inputs):
        info = next(i for i in model.inputs if i.name == la.name)
        return info.layout if info.layout in ("NCHW", "NHWC") else None
    return None


def default_layer(
    model: Model, walk_back: bool = True, input_shape: Sequence[int] | None = None
) -> str:
    """The last convolutional feature map before the final spatial reduction (Grad-CAM's,
    pytorch-grad-cam's and tf-keras-vis' choice): the last spatial tensor whose consumer drops the
    spatial layout (global pooling, flatten, a reduction), walked back through pooling, layout
    Transposes and no-op casts to the feature map they came from (so a 7x7 max-pooled map or a
    Keras export's Cast/Transpose copy is never chosen); the last spatial map when nothing reduces
    (FCN). For token models (ViT), the last (N, tokens, C) tensor whose tokens form a square grid.
    Spatial means H and W > 1 by the tensor's own layout (NCHW or NHWC). `walk_back=False`: the
    tensor the reduction reads itself (CAM needs the map that global pooling averages).
    `input_shape`: the array being explained, whose H and W give a dynamic-size model's layer
    shapes (`Model.layers_for`) when no size was given."""
    all_layers = model.layers_for(input_shape) if input_shape is not None else model.layers
    graph = model.proto.graph
    producer = {o: n for n in graph.node for o in n.output if o}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for i in node.input:
            consumers.setdefault(i, []).append(node)
    spatial = [la for la in all_layers if la.spatial]
    if spatial:
        names = {la.name for la in spatial}

        def reduced(name: str) -> bool:
            return any(
                n.op_type not in _SHAPE_OPS and not any(o in names for o in n.output if o)
                for n in consumers.get(name, [])
            )

        reducing = [la for la in spatial if reduced(la.name)]
        name = (reducing or spatial)[-1].name
        while (
            walk_back
            and (node := producer.get(name)) is not None
            and node.op_type in _PASS_BACK_OPS
        ):
            src = node.input[0] if node.input else ""
            if src not in names:
                break
            name = src
        return name
    tokens = [
        la
        for la in all_layers
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


def token_grid(tokens: int) -> tuple[int, int, int] | None:
    """(h, w, dropped leading tokens) for `tokens` when tokens or tokens - 1 is a square."""
    for drop in (0, 1):
        r = math.isqrt(tokens - drop)
        if r > 1 and r * r == tokens - drop:
            return r, r, drop
    return None


def to_maps(
    a: np.ndarray,
    model: Model,
    grid: tuple[int, int] | None = None,
    tensor: str | None = None,
) -> np.ndarray:
    """A layer tensor as (N, C, h, w): rank 4 by the layout of `tensor` (NCHW as is, NHWC or any
    other permutation transposed; a tensor of unknown layout in an NHWC-input model is taken as
    NHWC), tokens (N, T, C) reshaped to a grid with the leading (class/distillation) tokens
    dropped."""
    if a.ndim == 4:
        layout = layer_layout(model, tensor) if tensor is not None else None
        if layout is None and model.layout == "NHWC":
            layout = "NHWC"
        return np.ascontiguousarray(a.transpose(to_nchw_perm(layout))) if layout else a
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
