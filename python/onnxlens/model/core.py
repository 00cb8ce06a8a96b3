"""Model: an exported ONNX model composed of its graph, sessions and gradient component."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

from ..autodiff import VJPFunction
from ..autodiff.build import Rules
from ..data.images import ImageLike
from ..data.preprocess import PreprocessSpec, resolve_spec
from ..errors import ConfigurationError, LayerNotFoundError, ShapeError
from ..graph import Layer, add_outputs, list_layers, load_model, resolve_tensor
from ..graph.head import head_graph
from ..graph.inputs import InputInfo, input_infos
from ..graph.layers import layer_candidates, opset_version
from ..graph.load import ModelSource
from ..graph.shapes import infer_shapes, pin_input_shape
from ..runtime import GraphKey, SessionCache, batching
from ..runtime.device import DEVICES, resolve_providers
from . import describe
from .gradients import Gradients
from .memory import release_freed_memory

log = logging.getLogger("onnxlens")

# Upper bound on the bytes one batch may produce (inputs + requested tensors); large inputs are
# split into batches under it so activations of early, wide layers never exhaust memory.
DEFAULT_MEMORY_LIMIT = 1 << 30

Inputs = np.ndarray | ImageLike | Sequence[ImageLike]


class Model:
    """An ONNX model ready for inspection and visualisation.

    `source` is a path, serialized bytes or an `onnx.ModelProto` (copied, never mutated). The model
    is validated, shapes are inferred, and the image input's layout (NCHW/NHWC), size and dynamic
    dims are detected. `device` is "auto" (CUDA when it really loads, else CPU), "cpu" or "cuda";
    `threads` sets ONNX Runtime's intra-op threads (None: all cores). `preprocess` overrides the
    preprocessing spec (a PreprocessSpec, a dict of its fields, or a path to a JSON sidecar).
    """

    def __init__(
        self,
        source: ModelSource,
        device: str = "auto",
        threads: int | None = None,
        preprocess: PreprocessSpec | Mapping | str | os.PathLike | None = None,
        memory_limit: int = DEFAULT_MEMORY_LIMIT,
    ) -> None:
        if device not in DEVICES:
            raise ConfigurationError(f"device must be one of {', '.join(DEVICES)}; got {device!r}.")
        self.proto, self.base_dir = load_model(source)
        self.path = Path(source) if isinstance(source, str | os.PathLike) else None
        self.device = device
        self.threads = threads
        self.memory_limit = int(memory_limit)
        self._sessions = SessionCache(device, threads)
        self._layers = list_layers(self.proto)
        self._sized: dict[tuple[int | None, ...], list[Layer]] = {}
        self.inputs: list[InputInfo] = input_infos(self.proto)
        if not self.inputs:
            raise ConfigurationError(
                "the model has no runtime inputs (all inputs are initializers)."
            )
        self.input = next((i for i in self.inputs if i.layout != "other"), self.inputs[0])
        self.output_names = [o.name for o in self.proto.graph.output]
        self.preprocess = self._build_spec(preprocess)
        self.gradients = Gradients(self)
        self._heads: dict[str, Model | None] = {}
        self._notices: set[tuple[str, ...]] = set()

    # -- description ---------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.path.name if self.path else (self.proto.graph.name or "model")

    @property
    def input_name(self) -> str:
        return self.input.name

    @property
    def layout(self) -> str:
        return self.input.layout

    @property
    def input_size(self) -> tuple[int, int] | None:
        return self.input.size

    @property
    def opset(self) -> int:
        return opset_version(self.proto)

    @property
    def layers(self) -> list[Layer]:
        """Every layer with its output shape. For an input with dynamic height/width the shapes
        are those at the size the preprocessing was given (`--size`, a sidecar or a
        `preprocess=` size; not the assumed default), so the spatial layers are known;
        `layers_for(x.shape)` gives them at an array's size."""
        spec = getattr(self, "preprocess", None)
        if self.input.size is None and spec is not None and "size" not in spec.assumed:
            return self.layers_for(self._input_shape_at(spec.size))
        return list(self._layers)

    def layers_for(self, input_shape: Sequence[int] | None) -> list[Layer]:
        """The layers with their shapes for an input of `input_shape` (batch first, as the array
        given; the batch stays dynamic). The model's own layers when its input is static or the
        shape does not fit it. Cached per shape."""
        shape = self.input.shape
        if input_shape is None or shape is None or len(input_shape) != len(shape):
            return list(self._layers)
        pinned = tuple(
            None if a == 0 else (d if isinstance(d, int) and d > 0 else int(input_shape[a]))
            for a, d in enumerate(shape)
        )
        if all(isinstance(d, int) and d > 0 for d in shape[1:]) or any(
            d is not None and d <= 0 for d in pinned
        ):
            return list(self._layers)
        if pinned not in self._sized:
            try:
                proto = infer_shapes(pin_input_shape(self.proto, pinned))
                self._sized[pinned] = list_layers(proto)
            except Exception as exc:  # shape inference is best effort; names stay the same
                log.debug("onnxlens: layer shapes at %s failed: %s", pinned, exc)
                self._sized[pinned] = list(self._layers)
        return list(self._sized[pinned])

    def _input_shape_at(self, size: tuple[int, int]) -> tuple[int, ...] | None:
        """The image input's shape (batch 1) at (H, W) `size`, channels from the model or the
        preprocessing; None for an input that is not an image."""
        shape = self.input.shape
        if shape is None or len(shape) != 4 or self.input.layout not in ("NCHW", "NHWC"):
            return None
        c = int(self.input.channels or getattr(self.preprocess, "channels", 3) or 3)
        h, w = int(size[0]), int(size[1])
        return (1, c, h, w) if self.input.layout == "NCHW" else (1, h, w, c)

    def layer(self, name: str) -> Layer:
        """The layer for a tensor name or a node name; LayerNotFoundError suggests close names."""
        tensor = self.resolve(name)
        sized = {la.name: la for la in self.layers}
        if tensor in sized:
            return sized[tensor]
        info = next(i for i in self.inputs if i.name == tensor)
        return Layer(tensor, "Input", "", info.shape, 0, str(info.dtype))

    def resolve(self, name: str) -> str:
        """Tensor name for a tensor name, node name or "input"."""
        try:
            return resolve_tensor(self.proto, name, self._layers)
        except LayerNotFoundError as exc:
            hint = str(self.path) if self.path else "model.onnx"
            raise LayerNotFoundError(name, layer_candidates(self._layers), hint) from exc

    def weights(self, name: str) -> np.ndarray:
        """An initializer (weight) by name as a numpy array."""
        for t in self.proto.graph.initializer:
            if t.name == name:
                return numpy_helper.to_array(t)
        raise LayerNotFoundError(name, [t.name for t in self.proto.graph.initializer])

    @property
    def param_count(self) -> int:
        return sum(la.params for la in self._layers)

    def to_dict(self) -> dict:
        """The model card as plain data (what `onnxlens inspect --json` prints)."""
        return describe.to_dict(self)

    def summary(self, max_name: int = 48) -> str:
        """A table like Keras `model.summary()`: layer, op, output shape, params, with totals."""
        return describe.summary(self, max_name)

    # -- preprocessing -------------------------------------------------------------------------
    def _build_spec(
        self, preprocess: PreprocessSpec | Mapping | str | os.PathLike | None
    ) -> PreprocessSpec:
        info = self.input
        return resolve_spec(
            preprocess,
            size=info.size,
            layout=info.layout,
            channels=info.channels,
            model_path=self.path,
        )

    def prepare(self, inputs: Inputs) -> tuple[np.ndarray, np.ndarray | None]:
        """(model input tensor, fitted uint8 RGB images or None) for an array or images.

        A float array is taken as already preprocessed, in the model's layout; paths and uint8
        arrays go through `self.preprocess`. A model whose image input is an integer type (uint8
        pixels) takes an array of that type as it is. Empty batches and NaN/inf values are
        errors: a picture computed from them would look normal and mean nothing.
        """
        self._check_feedable()
        rank = len(self.input.shape or (0,) * 4)
        if self.input.dtype.kind in "iub":
            if (
                isinstance(inputs, np.ndarray)
                and inputs.dtype == self.input.dtype
                and inputs.ndim == rank
            ):
                x = np.ascontiguousarray(inputs)
                self._check_input(x)
                return x, None
            raise ConfigurationError(
                f"input {self.input_name!r} takes {self.input.dtype} values "
                f"{tuple(self.input.shape or ())} ({self.layout}), not images or float arrays; pass a "
                f"{self.input.dtype} array of that shape (e.g. np.asarray(images, dtype=np.{self.input.dtype})), "
                "or re-export the model with a float32 image input."
            )
        if (
            isinstance(inputs, np.ndarray)
            and inputs.dtype.kind == "f"
            and inputs.ndim == len(self.input.shape or (0,) * 4)
        ):
            x = np.ascontiguousarray(inputs, dtype=np.float32)
            self._check_input(x)
            return x, None
        if isinstance(inputs, np.ndarray) and inputs.dtype == np.uint8 and inputs.ndim == 4:
            inputs = list(inputs)
        if isinstance(inputs, Sequence) and not isinstance(inputs, str) and len(inputs) == 0:
            raise ShapeError("no inputs given; pass image paths, images or a float32 input array.")
        if self.preprocess.assumed:  # once per model and spec, not on every call
            desc = self.preprocess.describe()
            self.notice_once(("preprocessing", desc), "onnxlens: preprocessing %s", desc)
        x, fitted = self.preprocess(inputs)  # type: ignore[arg-type]
        self._check_input(x)
        return x, fitted

    def _check_feedable(self) -> None:
        """onnxlens feeds one image input; a model that needs more gets a clear error."""
        if len(self.inputs) > 1:
            names = ", ".join(f"{i.name!r} {tuple(i.shape or ())}" for i in self.inputs)
            raise ConfigurationError(
                f"the model has {len(self.inputs)} runtime inputs ({names}); onnxlens feeds one image "
                "input. Re-export the model with the other inputs fixed (as constants or initializers), "
                "or cut it to the image branch (onnx.utils.extract_model)."
            )

    def _check_input(self, x: np.ndarray) -> None:
        if x.ndim >= 1 and x.shape[0] == 0:
            raise ShapeError(
                f"the input batch is empty (shape {x.shape}); pass at least one image or sample."
            )
        if x.dtype.kind == "f":
            bad = x.size - int(np.count_nonzero(np.isfinite(x)))
            if bad:
                nan = int(np.count_nonzero(np.isnan(x)))
                raise ShapeError(
                    f"the input has {bad} non-finite values of {x.size} ({nan} NaN, {bad - nan} inf); "
                    "a map computed from them means nothing. Fix the preprocessing or the array "
                    "(np.isfinite(x).all() must hold), e.g. replace them with np.nan_to_num(x) if "
                    "that is what you mean."
                )
        shape = self.input.shape
        if shape is None:
            return
        if x.ndim != len(shape):
            raise ShapeError(
                f"input {self.input_name!r} expects rank {len(shape)} {tuple(shape)}, got shape {x.shape}."
            )
        for axis, (want, got) in enumerate(zip(shape, x.shape, strict=True)):
            if axis == 0:
                continue  # batches are split or padded to the model's batch size
            if isinstance(want, int) and want > 0 and want != got:
                raise ShapeError(
                    f"input {self.input_name!r} expects shape {tuple(shape)} ({self.layout}), got {x.shape}: "
                    f"axis {axis} is {got}, not {want}. Images are resized automatically; arrays must "
                    "already match."
                )

    # -- running -------------------------------------------------------------------------------
    @property
    def on_cpu(self) -> bool:
        """True when sessions run on ONNX Runtime's CPU provider (device "cpu", or "auto" without
        a working CUDA)."""
        return resolve_providers(self.device)[0] == "CPUExecutionProvider"

    def plain_session(self) -> ort.InferenceSession:
        """The cached session of the model as it is (no taps, no gradients)."""
        return self.session(GraphKey("plain"), lambda: self.proto)

    def clear_sessions(self) -> None:
        """Drop every cached session (graphs, packed weights, arenas): long jobs that move from
        one graph variant to the next (an atlas' layers) free the memory of the last one. The
        VJP graphs and the head models' sessions go too, and the freed memory goes back to the
        OS (`memory.release_freed_memory`); anything asked again is rebuilt."""
        self._sessions.clear()
        self.gradients.clear()
        for head in self._heads.values():
            if head is not None:
                head.clear_sessions()
        # Without it glibc keeps the freed arenas mapped and the next graph's peak adds to them.
        release_freed_memory()

    def session(self, key: GraphKey, build: Callable[[], onnx.ModelProto]) -> ort.InferenceSession:
        """The cached ORT session for a graph variant `key`, built by `build()` on first use."""
        return self._sessions.get(key, build)

    def batch_size_for(self, bytes_per_sample: int, requested: int | None = None) -> int:
        """Batch size under the memory bound, respecting a static model batch."""
        return batching.batch_size_for(
            bytes_per_sample, self.memory_limit, self.input.batch, requested
        )

    def vjp_bytes_per_sample(self, input_shape: Sequence[int] | None = None) -> int:
        """Bytes one sample costs a VJP run: every float32 tensor of the forward pass (at
        `input_shape`'s size for a dynamic-size model), once kept for the backward pass and once
        as its cotangent. Unknown shapes count as nothing, so for a fully dynamic model this is
        a floor."""
        total = 0
        for la in self.layers_for(input_shape):
            dims = [d for d in (la.shape or ())[1:] if isinstance(d, int) and d > 0]
            if la.dtype == "float32" and la.shape and len(dims) == len(la.shape) - 1:
                total += 4 * int(np.prod(dims))
        return 2 * total

    def tensor_bytes_per_sample(self, names: Sequence[str]) -> int:
        """float32 bytes per sample of the named tensors; an unknown shape counts as 64 times the
        input (the widest common expansion)."""
        ishape = self.input.shape or ()
        fallback = (
            4 * 64 * int(np.prod([d for d in ishape[1:] if isinstance(d, int) and d > 0] or [1]))
        )
        total = 0
        by_name = {la.name: la for la in self.layers}
        for name in names:
            la = by_name.get(name)
            total += batching.bytes_per_sample(la.shape if la else None, fallback)
        return total

    def run_batched(
        self,
        session: ort.InferenceSession,
        x: np.ndarray,
        output_names: Sequence[str],
        batch_size: int,
        extra: Mapping[str, np.ndarray] | None = None,
        progress: str | None = None,
        whole: Collection[str] = (),
    ) -> list[np.ndarray]:
        """`runtime.run_batched` on this model's image input (see there)."""
        return batching.run_batched(
            session,
            self.input_name,
            x,
            output_names,
            batch_size,
            extra=extra,
            progress=progress,
            whole=whole,
            static_batch=self.input.batch,
        )

    def run(self, inputs: Inputs, batch_size: int | None = None) -> dict[str, np.ndarray]:
        """The model's own outputs for `inputs` (images or a preprocessed array)."""
        x, _ = self.prepare(inputs)
        sess = self.plain_session()
        bs = self.batch_size_for(
            self.tensor_bytes_per_sample(self.output_names) + 4 * x[0].size, batch_size
        )
        outs = self.run_batched(sess, x, self.output_names, bs)
        return dict(zip(self.output_names, outs, strict=True))

    def predict(self, inputs: Inputs, batch_size: int | None = None) -> np.ndarray:
        """The first output (usually logits) for `inputs`."""
        return self.run(inputs, batch_size)[self.output_names[0]]

    def activations(
        self, inputs: Inputs, layers: Sequence[str] | str, batch_size: int | None = None
    ) -> dict[str, np.ndarray]:
        """Intermediate tensors, keyed by the names asked for (tensor or node names).

        One ORT run per batch of the same graph with the chosen tensors added as outputs (the
        original outputs unchanged). The rewritten graph's session is cached per layer set.
        """
        if isinstance(layers, str):
            layers = [layers]
        if not layers:
            raise ConfigurationError(
                "no layers asked for; pass layer names (see `onnxlens inspect`)."
            )
        tensors = [self.resolve(name) for name in layers]
        x, _ = self.prepare(inputs)
        wanted = list(dict.fromkeys(tensors))
        fetch = [t for t in wanted]
        input_taps = [t for t in fetch if t in {i.name for i in self.inputs}]
        fetch = [t for t in fetch if t not in input_taps]
        results: dict[str, np.ndarray] = {t: x for t in input_taps}
        if fetch:
            key = GraphKey("taps", tuple(sorted(fetch)))
            sess = self.session(key, lambda: add_outputs(self.proto, fetch))
            bs = self.batch_size_for(
                self.tensor_bytes_per_sample(fetch) + 4 * x[0].size, batch_size
            )
            outs = self.run_batched(sess, x, fetch, bs, progress="activations")
            results.update(dict(zip(fetch, outs, strict=True)))
        return {name: results[t] for name, t in zip(layers, tensors, strict=True)}

    # -- gradients (self.gradients, over onnxlens.autodiff) ------------------------------------
    def vjp_function(
        self,
        seeds: Sequence[str] | str,
        wrt: Sequence[str] | str = "input",
        rules: Rules = None,
        keep: Sequence[str] = (),
        batch: int | None = None,
        input_shape: Sequence[int] | None = None,
    ) -> VJPFunction:
        """The compiled VJP of (seeds, wrt, rules, keep): build once, call many times.

        ``f = model.vjp_function("logits", batch=8)`` then ``f({model.input_name: x}, {"logits":
        c}).gradients`` is one ONNX Runtime run. Names are tensor names, node names or "input";
        the function keys everything by tensor name (`f.seeds`, `f.wrt`). `batch` pins the CPU
        session to that many samples a call (the fastest form). `input_shape` (batch first) pins a
        dynamic-size input's dims.
        """
        return self.gradients.function(
            [seeds] if isinstance(seeds, str) else list(seeds),
            [wrt] if isinstance(wrt, str) else list(wrt),
            rules,
            keep,
            batch,
            input_shape,
        )

    def vjp(
        self,
        inputs: Inputs,
        cotangents: Mapping[str, np.ndarray],
        wrt: Sequence[str] | str = "input",
        rules: Rules = None,
        batch_size: int | None = None,
    ) -> dict[str, np.ndarray]:
        """Vector-Jacobian product: gradients of sum_k <cotangents[k], tensor k> w.r.t. `wrt`.

        Names (cotangent keys and `wrt`) are tensor names, node names or "input". Returns a dict
        keyed by the `wrt` names as given (primal outputs are not returned; see
        `activations_and_gradients`). `rules`: None, "guided", "deconvnet" or a RuleSet. The VJP
        graph is cached per (seeds, wrt, rules); on the CPU its session also per batch size (a
        graph pinned to the batch runs faster, see `autodiff.tune_for_cpu`), so the first call at
        a new batch size pays a session build (about 1 s for ResNet-50) and a short last batch is
        padded to the batch size rather than given its own session.
        """
        return self.gradients.vjp(inputs, cotangents, wrt, rules, batch_size)

    def gradient(
        self,
        inputs: Inputs,
        target: object,
        output: str | None = None,
        wrt: Sequence[str] | str = "input",
        rules: Rules = None,
        batch_size: int | None = None,
    ) -> np.ndarray | dict[str, np.ndarray]:
        """Gradient of a score w.r.t. the input (or layers). `target`: a class index, one index
        per sample, or a float cotangent array shaped like `output` (dense outputs). `output`
        defaults to the first output. An array shaped like the input (or like the layer) for a
        single `wrt` name; a dict keyed by the names for a list."""
        return self.gradients.gradient(inputs, target, output, wrt, rules, batch_size)

    def activations_and_gradients(
        self,
        inputs: Inputs,
        layers: Sequence[str] | str,
        target: object,
        output: str | None = None,
        rules: Rules = None,
        batch_size: int | None = None,
        wrt_input: bool = False,
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]:
        """(activations, their gradients, model outputs) from one run per batch (Grad-CAM)."""
        return self.gradients.activations_and_gradients(
            inputs, layers, target, output, rules, batch_size, wrt_input
        )

    # -- sub-models and notices --------------------------------------------------------------
    def head(self, tensor: str) -> Model | None:
        """A cached Model of the sub-graph from `tensor` to the outputs (`graph.head_graph`),
        sharing this model's device and thread settings; None when no such graph exists."""
        if tensor not in self._heads:
            proto = head_graph(self.proto, tensor)
            try:
                self._heads[tensor] = (
                    None
                    if proto is None
                    else Model(
                        proto,
                        device=self.device,
                        threads=self.threads,
                        memory_limit=self.memory_limit,
                    )
                )
            except Exception as exc:  # a head that ORT or the checker rejects: use the full graph
                log.debug("onnxlens: no head graph for %s: %s", tensor, exc)
                self._heads[tensor] = None
        return self._heads[tensor]

    def notice_once(self, key: tuple[str, ...], message: str, *args: object) -> None:
        """Log `message` at INFO the first time `key` is seen for this model (default-layer
        announcements: once per model and choice, not on every call)."""
        if key not in self._notices:
            self._notices.add(key)
            log.info(message, *args)

    # -- weights as pictures -------------------------------------------------------------------
    def conv_layers(self) -> list[Layer]:
        return [la for la in self._layers if la.op in ("Conv", "ConvTranspose")]

    def filters(self, layer: str | None = None) -> tuple[str, np.ndarray]:
        """(layer name, weights (O, I, kh, kw)) of a Conv layer; default the first one."""
        convs = self.conv_layers()
        if not convs:
            raise ConfigurationError("the model has no Conv layer, so it has no filters to show.")
        target = convs[0] if layer is None else self.layer(layer)
        node = next((n for n in self.proto.graph.node if target.name in n.output), None)
        if node is None or node.op_type not in ("Conv", "ConvTranspose"):
            raise ConfigurationError(
                f"layer {target.name!r} is a {target.op}, not a Conv; filters exist for Conv layers: "
                + ", ".join(c.name for c in convs[:5])
                + (" ..." if len(convs) > 5 else "")
            )
        w = self.weights(node.input[1])
        if node.op_type == "ConvTranspose":
            w = w.transpose(1, 0, 2, 3)
        return target.name, w

    def __repr__(self) -> str:
        i = self.input
        return f"Model({self.name!r}, input={i.name}{tuple(i.shape or ())} {i.layout}, layers={len(self._layers)})"
