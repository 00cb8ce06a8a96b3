"""The Method base class: one attribution method, one entry point (`attribute`), and the
batching and progress helpers the methods share.

Arrays: inputs (N, C, H, W) float32 in the model's layout, heat maps (N, H, W)
float32 at input resolution, sizes (H, W).
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import numpy as np

from ..errors import ConfigurationError
from ..model import Inputs, Model
from ..model.targets import Target, split_output_target
from ..render import upsample
from .explanation import Explanation, normalize_maps
from .layers import static_dims

# Cap on samples per extra-pass batch: ORT on CPU gains nothing beyond this, memory grows.
MAX_BATCH = 64


def resolve_output(model: Model, output: str | None) -> str:
    """The output tensor explained: `output` (an output, tensor or node name), else the first."""
    if output is None:
        return model.output_names[0]
    if output in model.output_names:
        return output
    return model.resolve(output)


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
    sizes = [
        4 * int(np.prod(dims)) for la in model.layers if (dims := static_dims(la.shape)) is not None
    ]
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


def vjp_batch_size(
    model: Model, requested: int | None = None, input_shape: Sequence[int] | None = None
) -> int:
    """Samples per VJP run under `model.memory_limit`: a backward pass keeps every forward
    tensor (`Model.vjp_bytes_per_sample`), not just the largest few a forward pass holds."""
    per = max(model.vjp_bytes_per_sample(input_shape), 1)
    bs = model.batch_size_for(per, requested)
    return bs if model.input.batch is not None or requested else min(bs, MAX_BATCH)


def deprecated(message: str) -> None:
    """A DeprecationWarning pointing at the caller's code: the first frame outside
    onnxlens.methods, however many method layers (subclass __init__, super().__init__) sit between."""
    level = 2
    frame = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__", "").startswith(__package__ or ""):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    warnings.warn(message, DeprecationWarning, stacklevel=level)


class Method:
    """One attribution method: `Method(model, ...).attribute(inputs, target=None, output=None,
    **knobs) -> Explanation`.

    The constructor takes what defines the method: `model` (an onnxlens Model or a path), the
    default `output` to explain (an output, tensor or node name; default: the first output),
    `progress` (tqdm bars on long work) and, per method, e.g. `layer=`, `abs=`, `magnitude=`.
    Per-call knobs go on `attribute`, in captum's names: `internal_batch_size` everywhere (samples
    per extra ORT run; default: what fits `model.memory_limit`), and `n_steps`, `method`,
    `baselines`, `nt_samples`, `stdevs`, `sliding_window_shapes`, `strides` where they apply.
    """

    name: ClassVar[str] = "method"
    #: Whether the method needs a layer (CAMs) -- then `layer=` applies.
    needs_layer: ClassVar[bool] = False

    def __init__(
        self,
        model: Model | str,
        output: str | None = None,
        progress: bool = True,
        *,
        batch_size: int | None = None,
    ) -> None:
        if output is not None and not isinstance(output, str):
            # Catches the old positional spellings, e.g. IntegratedGradients(model, 32).
            raise ConfigurationError(
                f"{type(self).__name__}: output= names the output to explain, got {output!r}; "
                "per-call settings (n_steps, baselines, internal_batch_size, ...) go to "
                "attribute(), by keyword."
            )
        self.model = model if isinstance(model, Model) else Model(model)
        self.output = output
        self.progress = progress
        self._params: dict[str, Any] = {"output": output, "progress": progress}
        # attribute()'s defaults given through deprecated constructor spellings.
        self._call_defaults: dict[str, Any] = {}
        self._deprecated_init(batch_size=("internal_batch_size", batch_size))

    def _deprecated_init(self, **moved: tuple[str, Any]) -> None:
        """Record constructor knobs that moved to `attribute` ({old: (new, value)}), warning once
        per one given."""
        for old, (new, value) in moved.items():
            if value is None:
                continue
            cls = type(self).__name__
            deprecated(
                f"{cls}({old}=...) is deprecated and will be removed in the next release; pass "
                f"{new}= to attribute() instead: {cls}(model).attribute(x, {new}=...)."
            )
            self._call_defaults[new] = value

    def _knob(self, name: str, value: Any, default: Any) -> Any:
        """A per-call knob: the value passed to attribute(), else a deprecated constructor value,
        else the method's default."""
        if value is not None:
            return value
        return self._call_defaults.get(name, default)

    def with_model(self, model: Model) -> Method:
        """The same method with the same settings on another model (sanity checks)."""
        new = type(self)(model, **self._params)
        new._call_defaults = dict(self._call_defaults)
        return new

    def attribute(
        self,
        inputs: Inputs,
        target: Target | str = None,
        output: str | None = None,
        *,
        internal_batch_size: int | None = None,
    ) -> Explanation:
        """Explain `inputs` (image paths, uint8 RGB images, or a preprocessed float array).

        `target`: None (each sample's top class), a class index, one index per sample, or a float
        cotangent shaped like the output (dense outputs). `output`: the output explained (an
        output, tensor or node name; default: the constructor's, else the first output).
        `internal_batch_size`: samples per extra ORT run (default: what fits the model's memory
        limit). The old spelling target="output_name" still works, with a DeprecationWarning."""
        tgt, output = split_output_target(target, output)
        return self._run(inputs, tgt, output, internal_batch_size)

    def _run(
        self,
        inputs: Inputs,
        target: object,
        output: str | None,
        internal_batch_size: int | None,
        **knobs: Any,
    ) -> Explanation:
        x, images = self.model.prepare(inputs)
        out = resolve_output(self.model, output if output is not None else self.output)
        bs = self._knob("internal_batch_size", internal_batch_size, None)
        if bs is not None and (not isinstance(bs, int) or bs < 1):
            raise ConfigurationError(f"internal_batch_size must be an int >= 1, got {bs!r}.")
        exp = self._attribute(x, target, out, bs, **knobs)
        exp.images = images
        exp.inputs = x
        return exp

    def _attribute(
        self, x: np.ndarray, target: object, output: str, bs: int | None, **knobs: Any
    ) -> Explanation:
        raise NotImplementedError

    # helpers for subclasses
    def _scores(self, x: np.ndarray, output: str, bs: int | None) -> np.ndarray:
        if output in self.model.output_names:
            return self.model.run(x, batch_size=bs)[output]
        return self.model.activations(x, [output], batch_size=bs)[output]

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
