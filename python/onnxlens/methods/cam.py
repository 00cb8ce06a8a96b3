"""The CAM family: one base computes `relu(sum_c w_c * A_c)` at a layer; each variant overrides
only `channel_weights` -- per-channel (N, C) weights, or per-position (N, C, h, w) weights for the
elementwise variants (HiResCAM, LayerCAM).

Gradients come from one forward pass with the layer tapped followed by the VJP of the graph's
*head* (the sub-graph from the layer to the outputs, usually pooling and a classifier), so
Grad-CAM costs about one forward pass. When the outputs also depend on the input around the
layer (a skip connection), the full VJP graph runs instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..errors import ConfigurationError
from ..graph.head import head_graph
from ..graph.layout import channel_axis
from ..graph.patterns import gap_classifier_weights
from ..model import Model
from ..model.targets import cotangent_for, target_from_scores, target_score
from ..render import upsample
from ..runtime import GraphKey
from .base import Method, as_list, deprecated, forward_batch_size, progress
from .explanation import Explanation, normalize_maps, softmax
from .layers import announce, default_layer, layer_layout, to_maps

__all__ = [
    "CAM",
    "AblationCAM",
    "EigenCAM",
    "GradCAM",
    "GradCAMPlusPlus",
    "HiResCAM",
    "LayerCAM",
    "ScoreCAM",
    "XGradCAM",
]


@dataclass
class LayerContext:
    """What a `channel_weights` override may need besides the activations and gradients."""

    x: np.ndarray  # model input (N, ...)
    layer: str  # tensor name
    layer_value: np.ndarray  # the layer tensor as the model produced it (any layout)
    target: np.ndarray  # int64 (N,) or float cotangent
    output: str
    scores: np.ndarray  # the explained output on x
    internal_batch_size: int | None = None  # attribute()'s, for variants that run the model


class BaseCAM(Method):
    """Class activation maps at one or more layers (averaged):
    `GradCAM(model, layer=None).attribute(inputs, target=None, output=None)`.

    Constructor: `layer`, a tensor or node name or a list of them (maps averaged after per-layer
    normalisation; the explanation's `.layers` lists the tensors used); default: the last spatial
    tensor before global pooling/flatten. `grid`: (h, w) of token models' patch grid when it
    cannot be inferred (leading class tokens beyond h*w are dropped). `output`: the default
    output explained. `attribute(..., internal_batch_size=None)`: samples per ORT run.
    """

    name: ClassVar[str] = "cam-base"
    needs_layer: ClassVar[bool] = True
    uses_gradients: ClassVar[bool] = True
    #: Centre each channel over space before weighting (Eigen-CAM's principal component).
    center: ClassVar[bool] = False
    #: Default layer: walk back from the final spatial reduction through pooling and layout
    #: copies to the last conv feature map (False: the map the reduction reads, as CAM needs).
    default_walks_back: ClassVar[bool] = True

    def __init__(
        self,
        model: Model | str,
        layer: str | Sequence[str] | None = None,
        output: str | None = None,
        grid: tuple[int, int] | None = None,
        progress: bool = True,
        *,
        batch_size: int | None = None,
    ) -> None:
        super().__init__(model, output=output, progress=progress, batch_size=batch_size)
        self.layers = as_list(layer)
        self.grid = grid
        self._params.update(layer=layer, grid=grid)

    # -- the one thing variants override ------------------------------------------------------
    def channel_weights(
        self, acts: np.ndarray, grads: np.ndarray | None, ctx: LayerContext
    ) -> np.ndarray:
        """(N, C) channel weights, or (N, C, h, w) position weights, for maps `acts` (N, C, h, w)."""
        raise NotImplementedError

    # -- shared ---------------------------------------------------------------------------------
    def resolved_layers(self, input_shape: Sequence[int] | None = None) -> list[str]:
        layers = self.layers or [default_layer(self.model, self.default_walks_back, input_shape)]
        tensors = [self.model.resolve(la) for la in layers]
        if self.layers is None:
            announce(self.model, type(self).__name__, tensors)
        return tensors

    def _attribute(
        self, x: np.ndarray, target: object, output: str, bs: int | None, **knobs: Any
    ) -> Explanation:
        layers = self.resolved_layers(x.shape)
        acts, grads, scores, tgt = self._acts_grads(x, target, output, layers, bs)
        raws: dict[str, np.ndarray] = {}
        heats = []
        for la in layers:
            a = to_maps(acts[la], self.model, self.grid, la).astype(np.float32, copy=False)
            g = (
                to_maps(grads[la], self.model, self.grid, la).astype(np.float32, copy=False)
                if grads
                else None
            )
            ctx = LayerContext(x, la, acts[la], tgt, output, scores, bs)
            w = np.asarray(self.channel_weights(a, g, ctx), dtype=np.float32)
            if w.ndim == 2:
                w = w[:, :, None, None]
            base = a - a.mean(axis=(2, 3), keepdims=True) if self.center else a
            cam = np.maximum((w * base).sum(axis=1), 0).astype(np.float32)
            cam = np.nan_to_num(cam, nan=0.0, posinf=0.0, neginf=0.0)
            raws[la] = cam
            heats.append(self._to_heat(cam, x))
        heat = heats[0] if len(heats) == 1 else normalize_maps(np.mean(heats, axis=0))
        raw: Any = raws[layers[0]] if len(layers) == 1 else raws
        return Explanation(self.name, heat, raw, tgt, scores, output, layers)

    def _acts_grads(
        self, x: np.ndarray, target: object, output: str, layers: list[str], bs: int | None
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray] | None, np.ndarray, np.ndarray]:
        m = self.model
        if not self.uses_gradients:
            got = m.activations(x, list(dict.fromkeys([*layers, output])), batch_size=bs)
            scores = got[output]
            return got, None, scores, target_from_scores(target, scores)
        head = m.head(layers[0]) if len(layers) == 1 else None
        if head is not None:
            # One forward with the layer tapped, then the VJP of the (small) head only.
            got = m.activations(x, list(dict.fromkeys([*layers, output])), batch_size=bs)
            scores = got[output]
            tgt = target_from_scores(target, scores)
            a = np.ascontiguousarray(got[layers[0]], dtype=np.float32)
            g = head.gradient(a, cotangent_for(tgt, scores.shape), output=output, wrt="input")
            return got, {layers[0]: np.asarray(g)}, scores, tgt
        if target is None:
            scores = self._scores(x, output, bs)
            tgt = target_from_scores(None, scores)
            cot = cotangent_for(tgt, scores.shape)
            acts, grads, _ = m.activations_and_gradients(
                x, layers, cot, output=output, batch_size=bs
            )
            return acts, grads, scores, tgt
        # An explicit target: activations, gradients and outputs come from one pass.
        arg = (
            target
            if isinstance(target, np.ndarray) and target.dtype.kind == "f"
            else np.asarray(target, np.int64)
        )
        acts, grads, outs = m.activations_and_gradients(
            x, layers, arg, output=output, batch_size=bs
        )
        scores = outs[output] if output in outs else self._scores(x, output, bs)
        return acts, grads, scores, target_from_scores(target, scores)


class CAM(BaseCAM):
    """Class activation mapping (Zhou et al. 2016): the classifier's weights of the target class,
    for networks ending in global average pooling -> fully connected. The weights are found in
    the graph (`graph.patterns.gap_classifier_weights` lists the patterns); other architectures
    get a clear error (use GradCAM, which generalises CAM)."""

    name = "cam"
    uses_gradients = False
    default_walks_back = False  # the classifier weights apply to the map global pooling reads

    def channel_weights(
        self, acts: np.ndarray, grads: np.ndarray | None, ctx: LayerContext
    ) -> np.ndarray:
        w = _classifier_weights(self.model, ctx.layer)
        if w.shape[1] != acts.shape[1]:
            raise ConfigurationError(
                f"the classifier after {ctx.layer!r} has {w.shape[1]} inputs but the layer has {acts.shape[1]} channels."
            )
        classes = int(np.prod(ctx.scores.shape[1:]))
        if w.shape[0] != classes:
            # E.g. an MLP head (MobileNetV3): the layer after pooling is not the one scoring classes.
            raise ConfigurationError(
                f"the fully connected layer after {ctx.layer!r} has {w.shape[0]} outputs but "
                f"{ctx.output!r} has {classes} values per sample, so it does not compute the "
                "explained scores. Use GradCAM (general) instead of CAM."
            )
        if ctx.target.dtype.kind == "f":
            return ctx.target.reshape(ctx.target.shape[0], -1) @ w
        return w[ctx.target]


def fc_weights(model: Model, layer: str) -> np.ndarray:
    """Deprecated: `onnxlens.graph.patterns.gap_classifier_weights(model.proto, tensor)`."""
    deprecated(
        "onnxlens.methods.cam.fc_weights is deprecated and will be removed in the next release; "
        "use onnxlens.graph.patterns.gap_classifier_weights(model.proto, tensor_name)."
    )
    return _classifier_weights(model, model.resolve(layer))


def _classifier_weights(model: Model, tensor: str) -> np.ndarray:
    w = gap_classifier_weights(model.proto, tensor)
    if w is None:
        raise ConfigurationError(
            f"CAM needs layer -> global average pooling -> fully connected, with the weights "
            f"stored in the graph; {tensor!r} is not followed by that. Use GradCAM (equal to CAM "
            "on such networks, and general)."
        )
    return w


class GradCAM(BaseCAM):
    """Grad-CAM (Selvaraju et al. 2017, Eq. 1): channel weights = spatial mean of the gradients."""

    name = "gradcam"

    def channel_weights(
        self, acts: np.ndarray, grads: np.ndarray | None, ctx: LayerContext
    ) -> np.ndarray:
        assert grads is not None
        return grads.mean(axis=(2, 3))


class GradCAMPlusPlus(BaseCAM):
    """Grad-CAM++ (Chattopadhay et al. 2018, Eq. 19 with the exponential-output simplification)."""

    name = "gradcam++"

    def channel_weights(
        self, acts: np.ndarray, grads: np.ndarray | None, ctx: LayerContext
    ) -> np.ndarray:
        assert grads is not None
        g2 = grads * grads
        g3 = g2 * grads
        s = acts.sum(axis=(2, 3), keepdims=True)
        alpha = g2 / (2 * g2 + s * g3 + 1e-6)
        alpha = np.where(grads != 0, alpha, 0)
        return (np.maximum(grads, 0) * alpha).sum(axis=(2, 3))


class XGradCAM(BaseCAM):
    """XGrad-CAM (Fu et al. 2020): weights = sum(grad * A) / sum(A) per channel."""

    name = "xgradcam"

    def channel_weights(
        self, acts: np.ndarray, grads: np.ndarray | None, ctx: LayerContext
    ) -> np.ndarray:
        assert grads is not None
        s = acts.sum(axis=(2, 3), keepdims=True)
        return (grads * acts / (s + 1e-7)).sum(axis=(2, 3))


class HiResCAM(BaseCAM):
    """HiResCAM (Draelos & Carin 2020): elementwise gradient x activation, summed over channels."""

    name = "hirescam"

    def channel_weights(
        self, acts: np.ndarray, grads: np.ndarray | None, ctx: LayerContext
    ) -> np.ndarray:
        assert grads is not None
        return grads


class LayerCAM(BaseCAM):
    """LayerCAM (Jiang et al. 2021): positive gradients as per-position weights."""

    name = "layercam"

    def channel_weights(
        self, acts: np.ndarray, grads: np.ndarray | None, ctx: LayerContext
    ) -> np.ndarray:
        assert grads is not None
        return np.maximum(grads, 0)


class EigenCAM(BaseCAM):
    """Eigen-CAM (Muhammad & Yeasin 2020): the projection of the centred activations on their
    first principal component. Class-agnostic. The SVD's sign is arbitrary; it is fixed so the
    salient region is positive (the larger-magnitude extreme is positive, Seg-Eigen-CAM Eq. 13)."""

    name = "eigencam"
    uses_gradients = False
    center = True

    def channel_weights(
        self, acts: np.ndarray, grads: np.ndarray | None, ctx: LayerContext
    ) -> np.ndarray:
        n, c = acts.shape[:2]
        w = np.zeros((n, c), np.float32)
        for i in range(n):
            m = np.nan_to_num(acts[i].reshape(c, -1).T.astype(np.float64))
            m = m - m.mean(axis=0)
            _, _, vt = np.linalg.svd(m, full_matrices=False)
            v = vt[0]
            proj = m @ v
            if abs(proj.min()) > abs(proj.max()):
                v = -v
            w[i] = v
        return w


class ScoreCAM(BaseCAM):
    """Score-CAM (Wang et al. 2020): each channel, upsampled and min-max scaled, masks the input;
    the softmax over channels of the masked inputs' target scores are the weights.

    The C forward passes per image run in batches under the model's memory bound. Channels
    constant over space mask the input to zero; that input is run once per batch of images."""

    name = "scorecam"
    uses_gradients = False

    def channel_weights(
        self, acts: np.ndarray, grads: np.ndarray | None, ctx: LayerContext
    ) -> np.ndarray:
        m = self.model
        x = ctx.x
        n, c = acts.shape[:2]
        size = self._input_size(x)
        bs = forward_batch_size(m, ctx.internal_batch_size)
        sess = m.plain_session()
        scores = np.zeros((n, c), np.float32)
        flat = acts.reshape(n, c, -1)
        live = flat.max(axis=2) - flat.min(axis=2) > 0
        # The all-zero input: what every constant channel's mask produces.
        zero_out = m.run_batched(sess, np.zeros_like(x[:1]), [ctx.output], 1)[0]
        scores[:] = target_score(np.repeat(zero_out, n, axis=0), ctx.target)[:, None]
        jobs = [
            (i, np.flatnonzero(live[i])[s : s + bs])
            for i in range(n)
            for s in range(0, int(live[i].sum()), bs)
        ]
        nhwc = m.layout == "NHWC"
        for i, ch in progress(jobs, "Score-CAM", self.progress):
            masks = normalize_maps(upsample(acts[i, ch], size))
            xi = x[i]
            batch = xi[None] * (masks[:, :, :, None] if nhwc else masks[:, None])
            out = m.run_batched(
                sess, np.ascontiguousarray(batch, dtype=np.float32), [ctx.output], len(ch)
            )[0]
            scores[i, ch] = target_score(out, np.repeat(ctx.target[i : i + 1], len(ch), axis=0))
        return softmax(scores, axis=1)


class AblationCAM(BaseCAM):
    """Ablation-CAM (Desai & Ramaswamy 2020): weight = relative drop of the target score when the
    channel is set to zero. Only the graph after the layer is re-run, in batches of ablated copies
    of the layer under the model's memory bound."""

    name = "ablationcam"
    uses_gradients = False

    def channel_weights(
        self, acts: np.ndarray, grads: np.ndarray | None, ctx: LayerContext
    ) -> np.ndarray:
        m = self.model
        layer_val = np.ascontiguousarray(ctx.layer_value, dtype=np.float32)
        key = GraphKey("override", (ctx.layer,))
        holder: dict[str, Any] = {}

        def build():
            g = head_graph(m.proto, ctx.layer, allow_input=True)
            if g is None:
                raise ConfigurationError(
                    f"cannot isolate the graph after {ctx.layer!r} for Ablation-CAM; choose another layer."
                )
            holder["g"] = g
            return g

        sess = m.session(key, build)
        feeds_names = [i.name for i in sess.get_inputs()]
        n = layer_val.shape[0]
        if layer_val.ndim == 4:
            layout = layer_layout(m, ctx.layer) or ("NHWC" if m.layout == "NHWC" else "NCHW")
            caxis = channel_axis(layout)
        else:
            caxis = layer_val.ndim - 1  # tokens (N, T, C)
        c = layer_val.shape[caxis]
        per = 4 * int(np.prod(layer_val.shape[1:])) * 3 + (
            4 * int(np.prod(ctx.x.shape[1:])) if len(feeds_names) > 1 else 0
        )
        bs = (
            max(1, min(c, int(m.memory_limit // max(1, per))))
            if not ctx.internal_batch_size
            else ctx.internal_batch_size
        )
        orig = target_score(ctx.scores, ctx.target)
        ablated = np.zeros((n, c), np.float32)
        jobs = [(i, s) for i in range(n) for s in range(0, c, bs)]
        for i, s in progress(jobs, "Ablation-CAM", self.progress):
            e = min(c, s + bs)
            batch = np.repeat(layer_val[i : i + 1], e - s, axis=0)
            idx = np.arange(e - s)
            view = np.moveaxis(batch, caxis, 1)  # a view: zeroing it zeroes the batch
            view[idx, np.arange(s, e)] = 0
            feeds = {feeds_names[0]: batch}
            for name in feeds_names[1:]:
                feeds[name] = np.repeat(ctx.x[i : i + 1], e - s, axis=0)
            out = sess.run([ctx.output], feeds)[0]
            ablated[i, s:e] = target_score(out, np.repeat(ctx.target[i : i + 1], e - s, axis=0))
        denom = np.where(np.abs(orig) > 1e-12, orig, 1e-12)[:, None]
        return (orig[:, None] - ablated) / denom
