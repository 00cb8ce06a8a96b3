"""The Method base class: one attribution method, one entry point (`attribute`), and the
batching and progress helpers the methods share.

Arrays follow DESIGN.md: inputs (N, C, H, W) float32 in the model's layout, heat maps (N, H, W)
float32 at input resolution, sizes (H, W).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import numpy as np

from ..model import Inputs, Model
from ..model.targets import split_output_target
from ..render import upsample
from .explanation import Explanation, normalize_maps
from .layers import _static

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
        target, output = split_output_target(target, self.output)
        x, images = self.model.prepare(inputs)
        out = resolve_output(self.model, output)
        exp = self._attribute(x, target, out)
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
