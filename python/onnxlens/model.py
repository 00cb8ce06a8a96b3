"""Model: an exported ONNX model with inspection, activations and (later) gradient entry points."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Collection, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

from .data.images import ImageLike
from .data.preprocess import PreprocessSpec, sidecar_path
from .errors import ConfigurationError, LayerNotFoundError, ShapeError
from .graph import Layer, add_outputs, list_layers, load_model, resolve_tensor
from .graph.layers import Shape, _dims, opset_version
from .graph.load import ModelSource
from .runtime import SessionCache
from .runtime.device import DEVICES, resolve_providers

log = logging.getLogger("onnxlens")

# Upper bound on the bytes one batch may produce (inputs + requested tensors); large inputs are
# split into batches under it so activations of early, wide layers never exhaust memory.
DEFAULT_MEMORY_LIMIT = 1 << 30

Inputs = np.ndarray | ImageLike | Sequence[ImageLike]


@dataclass(frozen=True)
class InputInfo:
    name: str
    shape: Shape
    dtype: np.dtype
    layout: str  # "NCHW", "NHWC" or "other"

    @property
    def batch(self) -> int | None:
        """The static batch size, or None when the batch dim is dynamic."""
        if not self.shape:
            return None
        d = self.shape[0]
        return d if isinstance(d, int) and d > 0 else None

    @property
    def size(self) -> tuple[int, int] | None:
        """(H, W) when static."""
        if self.layout == "NCHW" and self.shape is not None:
            h, w = self.shape[2], self.shape[3]
        elif self.layout == "NHWC" and self.shape is not None:
            h, w = self.shape[1], self.shape[2]
        else:
            return None
        return (h, w) if isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0 else None

    @property
    def channels(self) -> int | None:
        if self.shape is None or self.layout == "other":
            return None
        c = self.shape[1] if self.layout == "NCHW" else self.shape[3]
        return c if isinstance(c, int) and c > 0 else None


def _layout(shape: Shape) -> str:
    if shape is None or len(shape) != 4:
        return "other"
    c1, c3 = shape[1], shape[3]
    if isinstance(c1, int) and c1 in (1, 3, 4):
        return "NCHW"
    if isinstance(c3, int) and c3 in (1, 3, 4):
        return "NHWC"
    return "NCHW"


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
        self._layer_by_name = {la.name: la for la in self._layers}
        inits = {t.name for t in self.proto.graph.initializer}
        self.inputs = [
            InputInfo(
                v.name,
                _dims(v),
                np.dtype(onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type)),
                _layout(_dims(v)),
            )
            for v in self.proto.graph.input
            if v.name not in inits  # IR < 4 lists initializers as inputs too
        ]
        if not self.inputs:
            raise ConfigurationError(
                "the model has no runtime inputs (all inputs are initializers)."
            )
        self.input = next((i for i in self.inputs if i.layout != "other"), self.inputs[0])
        self.output_names = [o.name for o in self.proto.graph.output]
        self.preprocess = self._build_spec(preprocess)

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
        return list(self._layers)

    def layer(self, name: str) -> Layer:
        """The layer for a tensor name or a node name; LayerNotFoundError suggests close names."""
        tensor = self.resolve(name)
        if tensor in self._layer_by_name:
            return self._layer_by_name[tensor]
        info = next(i for i in self.inputs if i.name == tensor)
        return Layer(tensor, "Input", "", info.shape, 0, str(info.dtype))

    def resolve(self, name: str) -> str:
        """Tensor name for a tensor name, node name or "input"."""
        try:
            return resolve_tensor(self.proto, name, self._layers)
        except LayerNotFoundError as exc:
            hint = str(self.path) if self.path else "model.onnx"
            raise LayerNotFoundError(
                name, [la.name for la in self._layers] + [la.node for la in self._layers], hint
            ) from exc

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
        return {
            "model": self.name,
            "opset": self.opset,
            "producer": f"{self.proto.producer_name} {self.proto.producer_version}".strip(),
            "inputs": [
                {
                    "name": i.name,
                    "shape": list(i.shape or ()),
                    "dtype": str(i.dtype),
                    "layout": i.layout,
                }
                for i in self.inputs
            ],
            "outputs": self.output_names,
            "layers": [
                {
                    "name": la.name,
                    "op": la.op,
                    "shape": list(la.shape) if la.shape else None,
                    "params": la.params,
                }
                for la in self._layers
            ],
            "total_params": self.param_count,
            "preprocess": self.preprocess.to_dict(),
        }

    def summary(self, max_name: int = 48) -> str:
        """A table like Keras `model.summary()`: layer, op, output shape, params, with totals."""

        def fmt_shape(s: Shape) -> str:
            return (
                "?" if s is None else "(" + ", ".join("?" if d is None else str(d) for d in s) + ")"
            )

        def clip(s: str) -> str:
            return s if len(s) <= max_name else "…" + s[-(max_name - 1) :]

        rows = [
            (clip(la.name), la.op, fmt_shape(la.shape), f"{la.params:,}") for la in self._layers
        ]
        head = ("Layer (tensor)", "Op", "Output shape", "Params")
        widths = [
            max(len(head[i]), *(len(r[i]) for r in rows)) if rows else len(head[i])
            for i in range(4)
        ]
        line = "  ".join(
            h.ljust(w) if i < 3 else h.rjust(w)
            for i, (h, w) in enumerate(zip(head, widths, strict=True))
        )
        bar = "=" * len(line)
        out = [
            f'Model: "{self.name}"  (opset {self.opset}, {self.proto.producer_name or "unknown producer"})'
        ]
        for i in self.inputs:
            out.append(f"Input {i.name!r}: {fmt_shape(i.shape)} {i.dtype} {i.layout}")
        out += [bar, line, bar]
        for r in rows:
            out.append(
                "  ".join(
                    c.ljust(w) if i < 3 else c.rjust(w)
                    for i, (c, w) in enumerate(zip(r, widths, strict=True))
                )
            )
        out.append(bar)
        total = self.param_count
        out.append(f"Total params: {total:,} ({total * 4 / 2**20:.2f} MB as float32)")
        out.append(f"Layers: {len(self._layers)}  Outputs: {', '.join(self.output_names)}")
        return "\n".join(out)

    # -- preprocessing -------------------------------------------------------------------------
    def _build_spec(
        self, preprocess: PreprocessSpec | Mapping | str | os.PathLike | None
    ) -> PreprocessSpec:
        info = self.input
        assumed = ["channel order", "scale", "mean/std"]
        size = info.size
        if size is None:
            size = (224, 224)
            assumed.append("size")
        base = PreprocessSpec(
            size=size,
            layout=info.layout if info.layout in ("NCHW", "NHWC") else "NCHW",
            channels=info.channels if info.channels in (1, 3) else 3,
            mean=(0.5,) if info.channels == 1 else PreprocessSpec.mean,
            std=(0.5,) if info.channels == 1 else PreprocessSpec.std,
            assumed=tuple(assumed),
        )
        if isinstance(preprocess, PreprocessSpec):
            return preprocess
        if isinstance(preprocess, Mapping):
            return base.with_overrides(**preprocess)
        if preprocess is not None:
            return PreprocessSpec.from_file(preprocess, base)
        if self.path is not None and sidecar_path(self.path).exists():
            return PreprocessSpec.from_file(sidecar_path(self.path), base)
        return base

    def prepare(self, inputs: Inputs) -> tuple[np.ndarray, np.ndarray | None]:
        """(model input tensor, fitted uint8 RGB images or None) for an array or images.

        A float array is taken as already preprocessed, in the model's layout; paths and uint8
        arrays go through `self.preprocess`.
        """
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
        if self.preprocess.assumed:
            log.info("onnxlens: preprocessing %s", self.preprocess.describe())
        x, fitted = self.preprocess(inputs)  # type: ignore[arg-type]
        self._check_input(x)
        return x, fitted

    def _check_input(self, x: np.ndarray) -> None:
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
        return self.session(("plain",), lambda: self.proto)

    def session(self, key: Hashable, build: Callable[[], onnx.ModelProto]) -> ort.InferenceSession:
        """The cached ORT session for a graph variant `key`, built by `build()` on first use."""
        return self._sessions.get(key, build)

    def batch_size_for(self, bytes_per_sample: int, requested: int | None = None) -> int:
        """Batch size under the memory bound, respecting a static model batch."""
        static = self.input.batch
        if static is not None:
            return static
        if requested:
            return int(requested)
        return max(1, int(self.memory_limit // max(1, bytes_per_sample)))

    def tensor_bytes_per_sample(self, names: Iterable[str]) -> int:
        total = 0
        for name in names:
            la = self._layer_by_name.get(name)
            shape = la.shape if la else None
            if shape and all(isinstance(d, int) and d > 0 for d in shape[1:]):
                total += 4 * math.prod([int(d) for d in shape[1:] if isinstance(d, int)])
            else:  # unknown shape: assume as large as the input, times the widest common expansion
                ishape = self.input.shape or ()
                total += (
                    4
                    * 64
                    * int(np.prod([d for d in ishape[1:] if isinstance(d, int) and d > 0] or [1]))
                )
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
        """Run `session` over `x` (and per-sample `extra` feeds) in batches; concatenated outputs.

        A session with a static batch size (the model's own, or a graph specialised to one) gets
        exactly that many samples per run: the last batch is padded with copies of its first sample
        and the padding dropped from the results. Outputs named in `whole` are not per sample (a
        shape, say): the first run's value is returned as it is.
        """
        n = x.shape[0]
        static = self.input.batch
        if static is None:
            dim0 = next(i.shape for i in session.get_inputs() if i.name == self.input_name)[0]
            static = dim0 if isinstance(dim0, int) and dim0 > 0 else None
        chunks: list[list[np.ndarray]] = [[] for _ in output_names]
        starts = range(0, n, batch_size)
        iterator: Iterable[int] = starts
        if progress and len(starts) > 1:
            from tqdm.auto import tqdm

            iterator = tqdm(starts, desc=progress, unit="batch", leave=False)
        for s in iterator:
            e = min(n, s + batch_size)
            feeds = {self.input_name: x[s:e]}
            for k, v in (extra or {}).items():
                feeds[k] = v[s:e]
            real = e - s
            if static is not None and real != static:
                pad = static - real
                feeds = {
                    k: np.concatenate([v, np.repeat(v[:1], pad, axis=0)]) for k, v in feeds.items()
                }
            outs = session.run(list(output_names), feeds)
            for c, name, o in zip(chunks, output_names, outs, strict=True):
                c.append(o[:real] if static is not None and name not in whole else o)
        return [
            c[0] if len(c) == 1 or name in whole else np.concatenate(c)
            for name, c in zip(output_names, chunks, strict=True)
        ]

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
            key = ("taps", tuple(sorted(fetch)))
            sess = self.session(key, lambda: add_outputs(self.proto, fetch))
            bs = self.batch_size_for(
                self.tensor_bytes_per_sample(fetch) + 4 * x[0].size, batch_size
            )
            outs = self.run_batched(sess, x, fetch, bs, progress="activations")
            results.update(dict(zip(fetch, outs, strict=True)))
        return {name: results[t] for name, t in zip(layers, tensors, strict=True)}

    # -- gradients (onnxlens.autodiff) ---------------------------------------------------------
    def vjp(
        self,
        inputs: Inputs,
        cotangents: Mapping[str, np.ndarray],
        wrt: Sequence[str] | str = "input",
        rules: object = None,
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
        from .autodiff.api import vjp

        return vjp(self, inputs, cotangents, wrt, rules, batch_size)  # type: ignore[arg-type]

    def gradient(
        self,
        inputs: Inputs,
        target: object,
        output: str | None = None,
        wrt: Sequence[str] | str = "input",
        rules: object = None,
        batch_size: int | None = None,
    ) -> np.ndarray | dict[str, np.ndarray]:
        """Gradient of a score w.r.t. the input (or layers). `target`: a class index, one index
        per sample, or a float cotangent array shaped like `output` (dense outputs). `output`
        defaults to the first output. An array shaped like the input (or like the layer) for a
        single `wrt` name; a dict keyed by the names for a list."""
        from .autodiff.api import gradient

        return gradient(self, inputs, target, output, wrt, rules, batch_size)  # type: ignore[arg-type]

    def activations_and_gradients(
        self,
        inputs: Inputs,
        layers: Sequence[str] | str,
        target: object,
        output: str | None = None,
        rules: object = None,
        batch_size: int | None = None,
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]:
        """(activations, their gradients, model outputs) from one run per batch (Grad-CAM)."""
        from .autodiff.api import activations_and_gradients

        return activations_and_gradients(self, inputs, layers, target, output, rules, batch_size)  # type: ignore[arg-type]

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
