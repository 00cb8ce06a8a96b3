"""What the image-to-image synthesis methods (dream, inversion, texture, style, fooling) share.

- `model_at_size`: the model with its input pinned to another (H, W), for fully convolutional
  graphs exported at one size (a texture at any size, a dream octave, an inversion at 128 px).
- `unit_images`: photos (paths or uint8 arrays) as [0, 1] images (N, C, H, W) at a size, fitted
  by the model's own preprocessing.
- `LossFunction`: a compiled objective (the loss, in the graph) with [0, 1]-image I/O: `values,
  grad = f(img)` is one ONNX Runtime run, the gradient w.r.t. the image through the model's
  preprocessing (its exact adjoint). `ObjectiveValues`: objective values alone, one forward run.
- `spread_layers`: activation layers spread over the network's depth, one per spatial stage, for
  defaults that work on any model.
- `SynthesisResult`: images, loss curves, settings; what each entry point returns.
"""

from __future__ import annotations

import json
import logging
import os
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data import load_image
from ..data.images import ImageLike
from ..errors import ConfigurationError, ShapeError
from ..graph.shapes import pin_input_shape
from ..model import Model
from ..runtime import make_session
from ..runtime.session import detached
from .compiled import OBJECTIVE_OUTPUT, ObjectiveFunction, with_objective
from .objectives import Objective
from .space import ModelSpace

log = logging.getLogger("onnxlens")

# Ops whose outputs are the "activations" of a CNN (after the nonlinearity or a residual add).
ACTIVATION_OPS = frozenset(
    {
        "Relu",
        "Clip",
        "LeakyRelu",
        "PRelu",
        "Elu",
        "Selu",
        "Celu",
        "HardSwish",
        "Mish",
        "Gelu",
        "Add",
    }
)

_RESIZED: weakref.WeakKeyDictionary[Model, dict[tuple[int, int], Model]] = (
    weakref.WeakKeyDictionary()
)


def model_at_size(model: Model, size: tuple[int, int]) -> Model:
    """`model` itself when it takes (H, W) = `size` (or any size); else a copy whose input is
    pinned to `size`, which works for fully convolutional graphs (global pooling before the
    classifier). Raises ShapeError naming the model's own size when the graph cannot run there."""
    size = (int(size[0]), int(size[1]))
    if min(size) < 1:
        raise ShapeError(f"image sizes must be positive, got {size}.")
    own = model.input.size
    if own is None or tuple(own) == size:
        return model
    cache = _RESIZED.setdefault(model, {})
    if size in cache:
        return cache[size]
    c = model.input.channels or 3
    h, w = size
    shape = [None, h, w, c] if model.layout == "NHWC" else [None, c, h, w]
    proto = pin_input_shape(model.proto, shape)
    try:
        resized = Model(
            proto,
            device=model.device,
            threads=model.threads,
            preprocess=model.preprocess.with_overrides(size=size),
            memory_limit=model.memory_limit,
        )
        resized.predict(np.zeros((1, *shape[1:]), np.float32))  # type: ignore[arg-type]
    except Exception as exc:  # ORT's own errors too: the graph is bound to its size
        raise ShapeError(
            f"{model.name} was exported for {own[0]}x{own[1]} inputs and does not run at "
            f"{h}x{w} ({type(exc).__name__}: {str(exc).splitlines()[0][:160]}); use size="
            f"({own[0]}, {own[1]})."
        ) from exc
    if model.path is not None:
        resized.path = model.path  # keep the name for messages
    model.notice_once(
        ("synthesis", "resized", str(size)),
        "onnxlens: running %s at %dx%d (it was exported at %dx%d)",
        model.name, h, w, own[0], own[1],
    )  # fmt: skip
    cache[size] = resized
    return resized


def image_size(model: Model, size: Sequence[int] | None) -> tuple[int, int]:
    """`size` as (H, W) ints, or the model's own input size (224x224 for dynamic models)."""
    if size is None:
        own = model.input.size
        return (int(own[0]), int(own[1])) if own else (224, 224)
    if len(size) != 2:
        raise ShapeError(f"a size is (H, W); got {tuple(size)}.")
    return (int(size[0]), int(size[1]))


def unit_images(
    model: Model, images: ImageLike | Sequence[ImageLike] | np.ndarray, size: tuple[int, int]
) -> np.ndarray:
    """Photos as [0, 1] float32 images (N, C, H, W) at `size`, fitted (stretch/crop/pad) as the
    model's preprocessing fits them; C is the model's channel count (grey models get grey)."""
    spec = model.preprocess.with_overrides(size=tuple(size))
    if isinstance(images, np.ndarray) and images.dtype.kind == "f":
        arr = np.asarray(images, np.float32)
        if arr.ndim == 3:
            arr = arr[None]
        if arr.ndim != 4 or arr.shape[2:] != tuple(size):
            raise ShapeError(
                f"float images must be [0, 1] arrays (N, C, H, W) of size {tuple(size)}, got "
                f"{arr.shape}; pass uint8 photos or paths to have them resized."
            )
        return np.ascontiguousarray(arr)
    items: Sequence[ImageLike]
    if isinstance(images, np.ndarray):
        items = [images] if images.ndim in (2, 3) else list(images)
    elif isinstance(images, str | bytes) or not isinstance(images, Sequence):
        items = [images]  # type: ignore[list-item]
    else:
        items = images
    fitted = np.stack([spec.fit(load_image(im)) for im in items]).astype(np.float32) / 255.0
    if spec.channels == 1:
        fitted = fitted @ np.array([0.299, 0.587, 0.114], np.float32)[:, None]
    return np.ascontiguousarray(fitted.transpose(0, 3, 1, 2), dtype=np.float32)


def to_uint8(img: np.ndarray) -> np.ndarray:
    """(N, C, H, W) [0, 1] -> uint8 (N, H, W, 3) (grey repeated)."""
    u8 = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8).transpose(0, 2, 3, 1)
    return np.repeat(u8, 3, axis=3) if u8.shape[3] == 1 else np.ascontiguousarray(u8)


class LossFunction:
    """A compiled objective on [0, 1] images (N, C, H, W) of one size: ``values, grad = f(img)``
    is one ORT run; values (N,) float64, grad d values / d img (N, C, H, W) float32."""

    def __init__(
        self, model: Model, objective: Objective, batch: int, size: tuple[int, int]
    ) -> None:
        self.size = (int(size[0]), int(size[1]))
        self.model = model_at_size(model, self.size)
        self.batch = int(batch)
        self.objective = objective
        self.space = ModelSpace(self.model.preprocess.with_overrides(size=self.size))
        self.function = ObjectiveFunction(self.model, objective, self.batch, self.size)

    @property
    def image_shape(self) -> tuple[int, int, int, int]:
        return (self.batch, self.space.channels, *self.size)

    def __call__(self, img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if img.shape != self.image_shape:
            raise ShapeError(f"expected images of shape {self.image_shape}, got {img.shape}.")
        v, gx = self.function(self.space.to_model(img))
        return v.astype(np.float64), self.space.backward(gx)

    def values(self, img: np.ndarray) -> np.ndarray:
        return self(img)[0]


class ObjectiveValues:
    """Objective values without their gradient: ``values = f(img)`` is one forward ORT run of the
    model with the `objectives` ({name: Objective}) appended, on [0, 1] images (N, C, H, W) of one
    size; returns {name: (N,) float32}. A third of a `LossFunction` call, for what a loop only
    records (curves, the value of an octave's result)."""

    def __init__(
        self, model: Model, objectives: dict[str, Objective], batch: int, size: tuple[int, int]
    ) -> None:
        self.size = (int(size[0]), int(size[1]))
        self.batch = int(batch)
        m = model_at_size(model, self.size)
        self.space = ModelSpace(m.preprocess.with_overrides(size=self.size))
        self._feed = m.input_name
        names = list(objectives)
        if not names:
            raise ConfigurationError("ObjectiveValues needs at least one objective.")
        outputs = [OBJECTIVE_OUTPUT] + [f"onnxlens/values/{i}" for i in range(1, len(names))]
        proto, _ = with_objective(
            m,
            objectives[names[0]],
            self.batch,
            self.size,
            extra={out: objectives[name] for out, name in zip(outputs[1:], names[1:], strict=True)},
        )
        self._names, self._outputs = names, outputs
        # workers sleep between runs: the loop around it has its own work (see ObjectiveFunction)
        self._session = make_session(
            proto, device=m.device, threads=m.threads, base_dir=m.base_dir, spinning=False
        )

    def __call__(self, img: np.ndarray) -> dict[str, np.ndarray]:
        shape = (self.batch, self.space.channels, *self.size)
        if img.shape != shape:
            raise ShapeError(f"expected images of shape {shape}, got {img.shape}.")
        values = detached(self._session.run(self._outputs, {self._feed: self.space.to_model(img)}))
        return dict(zip(self._names, values, strict=True))


def activations_of(model: Model, img: np.ndarray, layers: Sequence[str]) -> dict[str, np.ndarray]:
    """The layers' activations for [0, 1] images (N, C, H, W) at their own size."""
    size = (int(img.shape[2]), int(img.shape[3]))
    m = model_at_size(model, size)
    space = ModelSpace(m.preprocess.with_overrides(size=size))
    acts = m.activations(space.to_model(img), list(layers))
    return {k: np.asarray(v, np.float32) for k, v in acts.items()}


def spatial_stages(model: Model) -> list[list[str]]:
    """Activation layers (ACTIVATION_OPS outputs of rank 4 with known spatial size), grouped by
    spatial resolution in graph order: one list per stage, shallow to deep."""
    stages: list[list[str]] = []
    last: tuple | None = None
    for la in model.layers:
        shape = la.shape
        if la.op not in ACTIVATION_OPS or shape is None or len(shape) != 4:
            continue
        hw = tuple(shape[1:3]) if model.layout == "NHWC" else tuple(shape[2:4])
        if not all(isinstance(d, int) for d in hw):
            continue
        if hw != last:
            stages.append([])
            last = hw
        stages[-1].append(la.name)
    return [s for s in stages if s]


def spread_layers(model: Model, count: int = 5, where: str = "first") -> list[str]:
    """Up to `count` activation layers spread over depth, one per spatial stage (`where`: the
    "first" or "last" layer of each stage; Gatys' conv1_1 ... conv5_1 are the firsts)."""
    stages = spatial_stages(model)
    if not stages:
        raise ConfigurationError(
            f"{model.name} has no 4-d activation layers of known size to default to; name the "
            "layers (see `onnxlens inspect MODEL`)."
        )
    idx = np.unique(np.linspace(0, len(stages) - 1, min(count, len(stages))).round().astype(int))
    return [stages[i][0 if where == "first" else -1] for i in idx]


def default_content_layer(model: Model) -> str:
    """Gatys' conv4_2 analogue: the second layer of the second-to-last spatial stage (the last
    layer of the stage when it has one only)."""
    stages = spatial_stages(model)
    if not stages:
        raise ConfigurationError(
            f"{model.name} has no 4-d activation layers of known size; pass content_layer=."
        )
    stage = stages[max(0, len(stages) - 2)]
    return stage[min(1, len(stage) - 1)]


@dataclass
class SynthesisResult:
    """What the synthesis entry points return.

    images: uint8 (N, H, W, 3); images_float: float32 (N, C, H, W) in [0, 1]; history: per-step
    curves {name: float64 (steps, N)} (the losses the optimiser saw); metrics: final figures per
    row {name: float64 (N,)}; settings: what was run (JSON-able); interrupted: Ctrl-C stopped it
    (what is done is kept).
    """

    images: np.ndarray
    images_float: np.ndarray
    history: dict[str, np.ndarray] = field(default_factory=dict)
    metrics: dict[str, np.ndarray] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    interrupted: bool = False

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: settings, metrics and curves (what the CLI writes)."""
        return {
            "settings": self.settings,
            "interrupted": self.interrupted,
            "metrics": {k: np.asarray(v).tolist() for k, v in self.metrics.items()},
            "history": {k: np.asarray(v).tolist() for k, v in self.history.items()},
        }

    def __repr__(self) -> str:
        steps = max((len(v) for v in self.history.values()), default=0)
        return (
            f"SynthesisResult({len(self)} images {self.images.shape[1]}x{self.images.shape[2]}, "
            f"{steps} steps{', interrupted' if self.interrupted else ''})"
        )


def progress_bar(enabled: bool, total: int, desc: str) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="step", leave=False)


def psnr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """PSNR in dB per row of [0, 1] images (N, ...)."""
    d = (np.asarray(a, np.float64) - np.asarray(b, np.float64)).reshape(len(a), -1)
    mse = np.maximum((d * d).mean(1), 1e-12)
    return 10 * np.log10(1.0 / mse)


def sheet(tiles: Sequence[np.ndarray], labels: Sequence[str], height: int = 224) -> np.ndarray:
    """A labelled side-by-side sheet of uint8 RGB images (any sizes: each is resized to the
    first one's aspect at `height` rows)."""
    import cv2

    from ..render.labels import labelled_grid

    h0, w0 = tiles[0].shape[:2]
    h = int(min(height, max(h0, 16)))
    w = max(1, round(w0 * h / h0))
    fitted = [
        t
        if t.shape[:2] == (h, w)
        else cv2.resize(np.ascontiguousarray(t), (w, h), interpolation=cv2.INTER_AREA)
        for t in tiles
    ]
    return labelled_grid(np.stack(fitted), list(labels), ncols=len(fitted))


def save_result(
    out: str | os.PathLike,
    result: SynthesisResult,
    stems: Sequence[str],
    tiles: Sequence[np.ndarray],
    labels: Sequence[str],
    record: str,
    extra: dict[str, Any] | None = None,
) -> list[Path]:
    """Write one PNG per result image (`stems[i]`.png), `sheet.png` (the `tiles` side by side
    with `labels`) and `record`.json (settings, metrics, curves, `extra`) into folder `out`."""
    from ..render import save_png

    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    written = [save_png(folder / f"{stem}.png", result.images[i]) for i, stem in enumerate(stems)]
    if tiles:
        written.append(save_png(folder / "sheet.png", sheet(tiles, labels)))
    data = {**result.to_dict(), **(extra or {})}
    data["files"] = [p.name for p in written]
    path = folder / f"{record}.json"
    path.write_text(json.dumps(data, indent=1))
    written.append(path)
    return written
