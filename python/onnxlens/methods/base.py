"""Shared machinery of the attribution methods: the Explanation result, the Method base class,
target handling, the default layer, token-grid reshaping and the "head" graph of a layer.

Arrays follow DESIGN.md: inputs (N, C, H, W) float32 in the model's layout, heat maps (N, H, W)
float32 at input resolution, sizes (H, W).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import onnx

from ..errors import ConfigurationError, ShapeError
from ..graph.layers import value_infos
from ..model import Inputs, Model
from ..render import overlay as _overlay
from ..render import upsample

log = logging.getLogger("onnxlens")

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
# Cap on samples per extra-pass batch: ORT on CPU gains nothing beyond this, memory grows.
MAX_BATCH = 64


# -- the result ---------------------------------------------------------------------------------


def normalize_maps(maps: np.ndarray) -> np.ndarray:
    """Each (h, w) map min-max scaled to [0, 1] on its own; constant or non-finite maps -> zeros."""
    m = np.asarray(maps, dtype=np.float32)
    flat = np.where(np.isfinite(m), m, np.nan).reshape(m.shape[0], -1)
    with np.errstate(all="ignore"):
        lo = np.nanmin(np.where(np.isnan(flat).all(1, keepdims=True), 0, flat), axis=1)
        hi = np.nanmax(np.where(np.isnan(flat).all(1, keepdims=True), 0, flat), axis=1)
    span = hi - lo
    ok = span > 1e-12 * np.maximum(1.0, np.abs(hi))
    out = np.zeros_like(flat)
    out[ok] = (flat[ok] - lo[ok, None]) / span[ok, None]
    out = np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)
    return np.clip(out, 0, 1).reshape(m.shape).astype(np.float32)


@dataclass
class Explanation:
    """The result of `Method.attribute`.

    heatmap: float32 (N, H, W) at the model's input resolution, each map in [0, 1].
    raw: the method's own output -- (N, h, w) at layer resolution for CAMs (a dict per layer when
        several layers are averaged), input-shaped (N, C, H, W) for gradient methods, (N, H, W)
        for occlusion.
    target: int64 (N,) class indices, or the float cotangent array used (dense outputs).
    scores: the model output that was explained, (N, ...), as computed on the inputs.
    images: fitted uint8 RGB (N, H, W, 3) when the inputs were images, else None.
    extras: method-specific values (e.g. integrated gradients' convergence delta).
    """

    method: str
    heatmap: np.ndarray
    raw: Any
    target: np.ndarray
    scores: np.ndarray
    output: str
    layers: list[str] = field(default_factory=list)
    images: np.ndarray | None = None
    inputs: np.ndarray | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.heatmap.shape[0])

    @property
    def target_scores(self) -> np.ndarray:
        """The explained score per sample: the target logit, or <cotangent, output>."""
        return target_score(self.scores, self.target)

    def overlay(
        self, images: np.ndarray | None = None, colormap: str = "jet", alpha: float = 0.5
    ) -> np.ndarray:
        """uint8 (N, H, W, 3): the heat maps blended over `images` (default: the fitted inputs)."""
        imgs = self.images if images is None else np.asarray(images)
        if imgs is None:
            raise ConfigurationError(
                "this explanation was computed from a preprocessed array, so there are no images to "
                "overlay; pass them: explanation.overlay(images) with uint8 RGB (N, H, W, 3)."
            )
        return _overlay(imgs, self.heatmap, colormap=colormap, alpha=alpha)

    def picture(self, max_images: int = 8) -> np.ndarray:
        """One uint8 RGB strip of the (first `max_images`) overlays or colour-mapped heat maps."""
        from ..render import apply_colormap

        k = min(len(self), max_images)
        tiles = self.overlay()[:k] if self.images is not None else apply_colormap(self.heatmap[:k])
        pad = np.full((tiles.shape[1], 4, 3), 255, np.uint8)
        parts: list[np.ndarray] = []
        for t in tiles:
            parts += [t, pad]
        return np.concatenate(parts[:-1], axis=1)

    def _repr_png_(self) -> bytes:
        import cv2

        ok, buf = cv2.imencode(".png", np.ascontiguousarray(self.picture()[:, :, ::-1]))
        return bytes(buf) if ok else b""

    def _repr_html_(self) -> str:
        import base64
        import html

        png = base64.b64encode(self._repr_png_()).decode()
        tgt = (
            self.target.tolist()
            if self.target.ndim == 1
            else f"cotangent {tuple(self.target.shape)}"
        )
        layers = f" on {', '.join(self.layers)}" if self.layers else ""
        return (
            f"<div><b>{html.escape(self.method)}</b>{html.escape(layers)} · target {html.escape(str(tgt))}<br>"
            f'<img src="data:image/png;base64,{png}"></div>'
        )

    def __repr__(self) -> str:
        return f"Explanation({self.method}, heatmap={tuple(self.heatmap.shape)}, target={self.target.tolist() if self.target.ndim == 1 else 'cotangent'})"


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax along `axis`."""
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def target_score(scores: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-sample score of the target: scores[i, target[i]] or sum(cotangent * scores)."""
    if target.dtype.kind == "f":
        return (target.reshape(target.shape[0], -1) * scores.reshape(scores.shape[0], -1)).sum(1)
    flat = scores.reshape(scores.shape[0], -1)
    return flat[np.arange(flat.shape[0]), target]


# -- targets ------------------------------------------------------------------------------------


def resolve_output(model: Model, output: str | None, target: object = None) -> str:
    """The output tensor explained: `output`, or `target` when it names an output, else the first."""
    if isinstance(target, str):
        output = target
    if output is None:
        return model.output_names[0]
    if output in model.output_names:
        return output
    return model.resolve(output)


def resolve_target(target: object, scores: np.ndarray) -> np.ndarray:
    """int64 (N,) class indices or a float32 cotangent shaped like `scores`.

    `target`: None or an output name (each sample's top class), an int, one int per sample, or a
    float array shaped like the output (an explicit cotangent for dense outputs)."""
    n = scores.shape[0]
    if target is None or isinstance(target, str):
        return scores.reshape(n, -1).argmax(1).astype(np.int64)
    if isinstance(target, np.ndarray) and target.dtype.kind == "f":
        if target.shape != scores.shape:
            raise ShapeError(
                f"a cotangent target must have the output's shape {scores.shape}, got {target.shape}."
            )
        return np.ascontiguousarray(target, dtype=np.float32)
    try:
        idx = np.asarray(target, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError):
        raise ConfigurationError(
            f"target must be a class index, one index per input, an output name or a float cotangent array; got {target!r}."
        ) from None
    if idx.size == 1:
        idx = np.repeat(idx, n)
    if idx.size != n:
        raise ShapeError(
            f"target has {idx.size} class indices for {n} inputs; give one, or one per input."
        )
    k = int(np.prod(scores.shape[1:]))
    if (idx < 0).any() or (idx >= k).any():
        raise ConfigurationError(
            f"class index out of range: the output has {k} values per sample; got {idx.tolist()}."
        )
    return idx


def cotangent_for(target: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A float32 cotangent of `shape` for class indices (one-hot) or a cotangent as is."""
    if target.dtype.kind == "f":
        return target.astype(np.float32, copy=False)
    c = np.zeros((shape[0], int(np.prod(shape[1:]))), np.float32)
    c[np.arange(shape[0]), target] = 1
    return c.reshape(shape)


# -- layers -------------------------------------------------------------------------------------


def _static(shape: object) -> bool:
    return shape is not None and all(isinstance(d, int) and d > 0 for d in shape[1:])  # type: ignore[union-attr]


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
        and _static(la.shape)
        and token_grid(int(la.shape[1])) is not None
    ]  # type: ignore[arg-type]
    if tokens:
        return tokens[-1].name
    raise ConfigurationError(
        "the model has no spatial (N, C, H, W) or token (N, T, C) layer to explain with a CAM; "
        "pass layer= (see `onnxlens inspect MODEL`) or use a gradient method (Saliency, IntegratedGradients)."
    )


def _nhwc_spatial(model: Model, shape: object) -> bool:
    return (
        model.layout == "NHWC"
        and shape is not None
        and len(shape) == 4
        and all(isinstance(d, int) and d > 1 for d in shape[1:3])
    )  # type: ignore[arg-type]


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
    seen = model.__dict__.setdefault("_announced_layers", set())
    key = tuple(layers)
    if key not in seen:
        seen.add(key)
        log.info(
            "onnxlens: %s explains layer %s (pass layer= to choose another)",
            method,
            ", ".join(layers),
        )


# -- the head of a layer: the sub-graph from a tensor to the outputs ----------------------------


def head_graph(
    proto: onnx.ModelProto, tensor: str, allow_input: bool = False
) -> onnx.ModelProto | None:
    """The sub-graph computing the model outputs from `tensor` (it becomes the first input).

    When the outputs also depend on the input through another path (a skip connection around
    `tensor`), None -- or, with `allow_input`, a graph that takes those runtime inputs too (after
    `tensor`), so `tensor` can be overridden while the rest is computed as usual. Used to
    differentiate or re-run only what follows a layer."""
    g = proto.graph
    inits = {t.name for t in g.initializer}
    runtime_inputs = {v.name for v in g.input if v.name not in inits}
    producer = {o: n for n in g.node for o in n.output}
    keep: set[int] = set()
    index = {id(n): i for i, n in enumerate(g.node)}
    stack = [o.name for o in g.output]
    seen: set[str] = set()
    reached: set[str] = set()
    while stack:
        t = stack.pop()
        if t in seen or t == tensor or t in inits or not t:
            continue
        seen.add(t)
        if t in runtime_inputs:
            if not allow_input:
                return None
            reached.add(t)
            continue
        node = producer.get(t)
        if node is None:
            continue
        keep.add(index[id(node)])
        stack.extend(node.input)
        for attr in node.attribute:  # sub-graphs (If/Loop) may read outer tensors
            if attr.type == onnx.AttributeProto.GRAPH:
                return None
    infos = value_infos(proto)
    vi = infos.get(tensor)
    if vi is None or not vi.type.tensor_type.elem_type:
        return None
    nodes = [g.node[i] for i in sorted(keep)]
    used = {i for n in nodes for i in n.input}
    inp = onnx.ValueInfoProto()
    inp.CopyFrom(vi)
    if inp.type.tensor_type.HasField("shape") and inp.type.tensor_type.shape.dim:
        d0 = inp.type.tensor_type.shape.dim[0]
        d0.Clear()
        d0.dim_param = "batch"
    graph = onnx.helper.make_graph(
        nodes,
        (g.name or "model") + "_head",
        [inp] + [v for v in g.input if v.name in reached],
        list(g.output),
        initializer=[t for t in g.initializer if t.name in used],
        value_info=[v for v in g.value_info if v.name in seen and v.name != tensor],
    )
    head = onnx.helper.make_model(
        graph, opset_imports=list(proto.opset_import), ir_version=proto.ir_version
    )
    head.functions.extend(proto.functions)
    return head


def head_model(model: Model, tensor: str) -> Model | None:
    """A cached Model of `head_graph(model, tensor)` sharing the device and thread settings."""
    cache = model.__dict__.setdefault("_onnxlens_heads", {})
    if tensor not in cache:
        proto = head_graph(model.proto, tensor)
        try:
            cache[tensor] = (
                None
                if proto is None
                else Model(
                    proto,
                    device=model.device,
                    threads=model.threads,
                    memory_limit=model.memory_limit,
                )
            )
        except Exception as exc:  # a head that ORT or the checker rejects: use the full graph
            log.debug("onnxlens: no head graph for %s: %s", tensor, exc)
            cache[tensor] = None
    return cache[tensor]


# -- the Method base ----------------------------------------------------------------------------


def progress(iterable: Sequence[Any] | range, desc: str, enabled: bool) -> Iterator[Any]:
    """tqdm over `iterable` when enabled and there is more than one step."""
    if enabled and len(iterable) > 1:
        from tqdm.auto import tqdm

        yield from tqdm(iterable, desc=desc, leave=False)
    else:
        yield from iterable


def forward_batch_size(model: Model, requested: int | None = None) -> int:
    """Samples per extra forward pass under `model.memory_limit`: the input, the outputs and a few
    of the largest intermediate tensors (ORT frees the rest as it goes) per sample."""
    sizes = [4 * int(np.prod(la.shape[1:])) for la in model.layers if _static(la.shape)]  # type: ignore[index]
    biggest = (
        sorted(sizes)[-4:]
        if sizes
        else [
            4
            * 64
            * int(
                np.prod(
                    [d for d in (model.input.shape or (1,))[1:] if isinstance(d, int) and d > 0]
                    or [1]
                )
            )
        ]
    )
    per = sum(biggest) + model.tensor_bytes_per_sample(model.output_names)
    per += 4 * int(
        np.prod([d for d in (model.input.shape or (1,))[1:] if isinstance(d, int) and d > 0] or [1])
    )
    bs = model.batch_size_for(per, requested)
    return bs if model.input.batch is not None or requested else min(bs, MAX_BATCH)


class Method:
    """One attribution method: `Method(model, ...).attribute(inputs, target=None) -> Explanation`.

    `model` is an onnxlens Model (or a path). `output` names the output to explain (default: the
    first). `progress` shows tqdm bars on long work.
    """

    name: ClassVar[str] = "method"
    #: Whether the method needs a layer (CAMs) -- then `layer=` applies.
    needs_layer: ClassVar[bool] = False

    def __init__(
        self,
        model: Model | str,
        output: str | None = None,
        progress: bool = True,
        batch_size: int | None = None,
    ) -> None:
        self.model = model if isinstance(model, Model) else Model(model)
        self.output = output
        self.progress = progress
        self.batch_size = batch_size
        self._params: dict[str, Any] = {
            "output": output,
            "progress": progress,
            "batch_size": batch_size,
        }

    def with_model(self, model: Model) -> Method:
        """The same method with the same settings on another model (sanity checks)."""
        return type(self)(model, **self._params)

    def attribute(self, inputs: Inputs, target: object = None) -> Explanation:
        """Explain `inputs` (image paths, uint8 RGB images, or a preprocessed float array).

        `target`: None (each sample's top class), a class index, one index per sample, an output
        name (its top class) or a float cotangent shaped like the output (dense outputs)."""
        x, images = self.model.prepare(inputs)
        out = resolve_output(self.model, self.output, target)
        exp = self._attribute(x, None if isinstance(target, str) else target, out)
        exp.images = images
        exp.inputs = x
        return exp

    def _attribute(self, x: np.ndarray, target: object, output: str) -> Explanation:
        raise NotImplementedError

    # helpers for subclasses
    def _scores(self, x: np.ndarray, output: str) -> np.ndarray:
        if output in self.model.output_names:
            return self.model.run(x, batch_size=self.batch_size)[output]
        return self.model.activations(x, [output], batch_size=self.batch_size)[output]

    def _input_size(self, x: np.ndarray) -> tuple[int, int]:
        if self.model.layout == "NHWC" and x.ndim == 4:
            return int(x.shape[1]), int(x.shape[2])
        return int(x.shape[-2]), int(x.shape[-1])

    def _to_heat(self, maps: np.ndarray, x: np.ndarray) -> np.ndarray:
        """(N, h, w) maps -> normalised (N, H, W) at input resolution."""
        size = self._input_size(x)
        m = np.nan_to_num(np.asarray(maps, np.float32), nan=0.0, posinf=0.0, neginf=0.0)
        if m.shape[1:] != size:
            m = upsample(normalize_maps(m), size)
        return normalize_maps(m)

    def _channel_reduce(self, attr: np.ndarray) -> np.ndarray:
        """Input-shaped attributions -> (N, H, W) by summing |a| over channels."""
        axis = 3 if self.model.layout == "NHWC" and attr.ndim == 4 else 1
        return np.abs(attr).sum(axis=axis) if attr.ndim == 4 else np.abs(attr)


def as_list(layer: str | Sequence[str] | None) -> list[str] | None:
    if layer is None:
        return None
    return [layer] if isinstance(layer, str) else list(layer)
