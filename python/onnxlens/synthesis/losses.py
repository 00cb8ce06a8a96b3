"""In-graph losses for inversion, texture synthesis and style transfer.

Each loss is an `Objective` whose nodes are appended to the model graph, so a loss, however many
layers it reads, and its gradient w.r.t. the input come out of ONE compiled VJP run
(`ObjectiveFunction`). Targets (the features or Gram matrices to match) are constants baked into
the graph as initializers, shaped (1, ...) for one target shared by every batch row or (N, ...)
for one per row. Unlike the feature-visualisation objectives these are *losses*: their values
are >= 0 and the methods minimise them (descend on the gradient).

- `feature_loss(layer, phi0)`: ||Phi(x) - Phi0||^2 / ||Phi0||^2 (Mahendran & Vedaldi 2015): the
  normalised feature error.
- `content_loss(layer, phi0)`: mean((Phi(x) - Phi0)^2) (Gatys 2016; the PyTorch tutorial's
  `F.mse_loss`).
- `style_loss(layers, grams, weights)`: sum_l w_l mean((G_l(x) - G0_l)^2), Gram matrices
  G = F^T F / (C H W) over the positions of each layer (the tutorial's normalisation).
- `gram_matrix(acts)`: the numpy Gram of activations, for targets (and what tests compare
  against).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigurationError, ShapeError
from .objectives import EmitContext, Objective


def _channels_last_axes(shape: Sequence, c_axis: int) -> list[int]:
    return [0] + [a for a in range(1, len(shape)) if a != c_axis] + [c_axis]


def gram_matrix(acts: np.ndarray, layout: str = "NCHW") -> np.ndarray:
    """Gram matrices (N, C, C) of activations (N, C, H, W) (or NHWC, or (N, T, C) tokens),
    normalised by C * H * W: G[c, d] = sum_p F[c, p] F[d, p] / (C H W)."""
    a = np.asarray(acts, np.float64)
    if a.ndim == 4 and layout == "NCHW":
        a = a.transpose(0, 2, 3, 1)
    if a.ndim < 3:
        raise ShapeError(f"a Gram matrix needs a map (N, C, H, W); got shape {a.shape}.")
    n, c = a.shape[0], a.shape[-1]
    f = a.reshape(n, -1, c)
    # einsum's own loop, not BLAS: OpenBLAS' threaded dgemm on these tall maps took 0.4-2 s (its
    # threads wait on cores the machine's other work holds) where this takes 25 ms at 65536x32
    return np.einsum("npc,npd->ncd", f, f) / (c * f.shape[1])


def emit_gram(ctx: EmitContext, tensor: str) -> tuple[str, int]:
    """Emit (N, C, C) Gram matrices of `tensor` normalised by C*H*W; returns (name, C)."""
    b = ctx.builder
    shape = ctx.shape(tensor)
    c_axis = ctx.channel_axis(tensor)
    if len(shape) < 3:
        raise ShapeError(
            f"a Gram matrix needs a spatial layer (N, C, H, W); {tensor!r} has shape {shape}."
        )
    c = shape[c_axis]
    rest = [d for i, d in enumerate(shape) if i not in (0, c_axis)]
    if not isinstance(c, int) or not all(isinstance(d, int) for d in rest):
        raise ShapeError(
            f"the shape of {tensor!r} ({shape}) is not static; a Gram matrix needs it."
        )
    t = tensor
    if c_axis != len(shape) - 1:
        t = b.op("Transpose", [t], perm=_channels_last_axes(shape, c_axis))
    flat = b.op("Reshape", [t, b.ints([ctx.batch, -1, c])])  # (N, P, C)
    gram = b.op("MatMul", [b.op("Transpose", [flat], perm=[0, 2, 1]), flat])  # (N, C, C)
    positions = int(np.prod(rest))
    return b.mul(gram, b.scalar(1.0 / (c * positions), gram)), c


def _target(value: np.ndarray, want: Sequence, batch: int, what: str) -> np.ndarray:
    """A target (1 or N, *want) float32, or a clear error."""
    t = np.asarray(value, np.float32)
    if t.ndim == len(want):  # no batch axis: one shared target
        t = t[None]
    if t.ndim != len(want) + 1 or any(
        isinstance(d, int) and d != got for d, got in zip(want, t.shape[1:], strict=True)
    ):
        raise ShapeError(
            f"the {what} target has shape {t.shape}; it must be {tuple(want)} or "
            f"(N, {', '.join(map(str, want))}) for N = 1 or the batch ({batch}). Compute it at the "
            "same image size as the optimised image."
        )
    if t.shape[0] not in (1, batch):
        raise ShapeError(
            f"the {what} target has {t.shape[0]} rows; give 1 (shared) or {batch} (one per row)."
        )
    return t


@dataclass(frozen=True, eq=False)
class FeatureLoss(Objective):
    """sum((Phi(x) - Phi0)^2) per row, divided by ||Phi0||^2 per row (`normalize`, Mahendran &
    Vedaldi's normalised error) or by the number of elements (mean squared error)."""

    layer: str
    target: np.ndarray
    normalize: bool = True

    def emit(self, ctx: EmitContext) -> str:
        b = ctx.builder
        t = ctx.tensor(self.layer)
        shape = ctx.shape(t)
        target = _target(self.target, shape[1:], ctx.batch, f"feature ({self.layer!r})")
        d = b.op("Sub", [t, b.const(target, hint="phi0")])
        axes = list(range(1, len(shape)))
        s = b.reduce_sum(b.mul(d, d), axes, keepdims=False)  # (N,)
        if self.normalize:
            norms = (target.reshape(len(target), -1).astype(np.float64) ** 2).sum(1)
            if (norms <= 0).any():
                raise ConfigurationError(
                    f"the target features of {self.layer!r} are all zero; a normalised feature "
                    "loss needs a non-zero target (use content_loss, or another layer)."
                )
            scale = (1.0 / norms).astype(np.float32)
        else:
            scale = np.full(1, 1.0 / target[0].size, np.float32)
        return b.mul(s, b.const(scale, hint="phi0_norm"))

    @property
    def layers(self) -> list[str]:
        return [self.layer]

    def __repr__(self) -> str:
        kind = "feature_loss" if self.normalize else "content_loss"
        return f"{kind}({self.layer!r})"


@dataclass(frozen=True, eq=False)
class StyleLoss(Objective):
    """sum_l w_l mean((G_l(x) - G0_l)^2) over the C*C entries: Gatys' style loss with Gram
    matrices normalised by C*H*W (`gram_matrix`)."""

    layers_: tuple[str, ...]
    targets: tuple[np.ndarray, ...]
    weights: tuple[float, ...]

    def emit(self, ctx: EmitContext) -> str:
        b = ctx.builder
        out: str | None = None
        for layer, target, w in zip(self.layers_, self.targets, self.weights, strict=True):
            gram, c = emit_gram(ctx, ctx.tensor(layer))
            g0 = _target(target, (c, c), ctx.batch, f"Gram ({layer!r})")
            d = b.op("Sub", [gram, b.const(g0, hint="gram0")])
            term = b.reduce_sum(b.mul(d, d), [1, 2], keepdims=False)
            term = b.mul(term, b.scalar(float(w) / (c * c), term))
            out = term if out is None else b.op("Add", [out, term])
        assert out is not None
        return out

    @property
    def layers(self) -> list[str]:
        return list(self.layers_)

    def __repr__(self) -> str:
        return f"style_loss({list(self.layers_)!r}, weights={list(self.weights)!r})"


def feature_loss(layer: str, target: np.ndarray) -> Objective:
    """||Phi(x) - Phi0||^2 / ||Phi0||^2 per row; `target` is Phi0, (C, H, W) or (N, C, H, W)."""
    return FeatureLoss(layer, np.asarray(target, np.float32), True)


def content_loss(layer: str, target: np.ndarray) -> Objective:
    """mean((Phi(x) - Phi0)^2) per row (Gatys' content loss as the PyTorch tutorial writes it)."""
    return FeatureLoss(layer, np.asarray(target, np.float32), False)


def style_loss(
    layers: Sequence[str],
    grams: Sequence[np.ndarray],
    weights: Sequence[float] | None = None,
) -> Objective:
    """Weighted Gram-matrix loss over `layers`; `grams[i]` is layer i's target (C, C) or
    (N, C, C) (from `gram_matrix`). Weights default to 1/len(layers) each."""
    layers = list(layers)
    if not layers:
        raise ConfigurationError("style_loss needs at least one layer.")
    if len(grams) != len(layers):
        raise ConfigurationError(f"{len(layers)} layers but {len(grams)} Gram targets.")
    w = [1.0 / len(layers)] * len(layers) if weights is None else [float(x) for x in weights]
    if len(w) != len(layers):
        raise ConfigurationError(f"{len(layers)} layers but {len(w)} weights; give one per layer.")
    return StyleLoss(tuple(layers), tuple(np.asarray(g, np.float32) for g in grams), tuple(w))


_SQUASHING = ("Softmax", "LogSoftmax", "Sigmoid")


@dataclass(frozen=True, eq=False)
class CrossEntropy(Objective):
    """-log softmax(logits)[k_i] for row i's class k_i (`classes`, one per row, or one for all).
    When the output already is a Softmax/LogSoftmax/Sigmoid, its input (the logits) is used."""

    classes: tuple[int, ...]
    output: str | None = None

    def emit(self, ctx: EmitContext) -> str:
        b = ctx.builder
        out, k = _logits(ctx, self.output, "cross_entropy")
        onehot = _onehot(ctx, self.classes, k)
        logp = b.op("LogSoftmax", [out], axis=1)
        picked = b.reduce_sum(b.mul(logp, b.const(onehot, hint="onehot")), [1], keepdims=False)
        return b.neg(picked)

    def __repr__(self) -> str:
        return f"cross_entropy({list(self.classes)})"


def reduce_max(ctx: EmitContext, x: str, axis: int) -> str:
    """ReduceMax over one axis, keepdims=0 (axes an input from opset 18, an attribute before)."""
    b = ctx.builder
    if b.opset >= 18:
        return b.op("ReduceMax", [x, b.ints([axis])], keepdims=0)
    return b.op("ReduceMax", [x], axes=[axis], keepdims=0)


def _logits(ctx: EmitContext, output: str | None, what: str) -> tuple[str, int]:
    out = ctx.tensor(output) if output else ctx.outputs[0]
    node = ctx.producers.get(out)
    if node is not None and node.op_type in _SQUASHING:
        out = node.input[0]
    shape = ctx.shape(out)
    if len(shape) != 2 or not isinstance(shape[1], int):
        raise ShapeError(
            f"{what} needs (N, classes) logits; {out!r} has shape {shape}. Name the classifier "
            "output with output=."
        )
    return out, shape[1]


def _onehot(ctx: EmitContext, classes: tuple[int, ...], k: int) -> np.ndarray:
    rows = list(classes) * (ctx.batch if len(classes) == 1 else 1)
    if len(rows) != ctx.batch:
        raise ConfigurationError(
            f"{len(classes)} classes for a batch of {ctx.batch}; give one per row."
        )
    bad = [c for c in rows if not 0 <= c < k]
    if bad:
        raise ConfigurationError(f"classes {bad} are out of range for {k} outputs.")
    onehot = np.zeros((ctx.batch, k), np.float32)
    onehot[np.arange(ctx.batch), rows] = 1
    return onehot


@dataclass(frozen=True, eq=False)
class LogitMargin(Objective):
    """z_k - max_{j != k} z_j per row (Carlini & Wagner's margin): > 0 exactly when class k is
    the top-1; unlike the cross-entropy it does not saturate on confident logits."""

    classes: tuple[int, ...]
    output: str | None = None

    def emit(self, ctx: EmitContext) -> str:
        b = ctx.builder
        out, k = _logits(ctx, self.output, "logit_margin")
        onehot = _onehot(ctx, self.classes, k)
        mine = b.reduce_sum(b.mul(out, b.const(onehot, hint="onehot")), [1], keepdims=False)
        others = b.op("Sub", [out, b.const(onehot * np.float32(1e9), hint="mask_own")])
        return b.op("Sub", [mine, reduce_max(ctx, others, 1)])

    def __repr__(self) -> str:
        return f"logit_margin({list(self.classes)})"


def logit_margin(classes: int | Sequence[int], output: str | None = None) -> Objective:
    """Per-row margin z_k - max_{j != k} z_j of class classes[i] over the runner-up."""
    cs = (
        (int(classes),) if isinstance(classes, int | np.integer) else tuple(int(c) for c in classes)
    )
    if not cs:
        raise ConfigurationError("logit_margin needs at least one class.")
    return LogitMargin(cs, output)


def cross_entropy(classes: int | Sequence[int], output: str | None = None) -> Objective:
    """Per-row cross-entropy -log p(classes[i]) of the model's softmax (a loss to minimise for
    a targeted attack, to maximise for an untargeted one)."""
    cs = (
        (int(classes),) if isinstance(classes, int | np.integer) else tuple(int(c) for c in classes)
    )
    if not cs:
        raise ConfigurationError("cross_entropy needs at least one class.")
    return CrossEntropy(cs, output)


__all__ = [
    "CrossEntropy",
    "FeatureLoss",
    "LogitMargin",
    "StyleLoss",
    "content_loss",
    "cross_entropy",
    "emit_gram",
    "feature_loss",
    "gram_matrix",
    "logit_margin",
    "reduce_max",
    "style_loss",
]
