"""Deep dream (Mordvintsev, Olah & Tyka 2015): amplify what a layer, channel or class sees in an
image.

The loop is the original notebook's: a pyramid of octaves (each `octave_scale` ~1.4 smaller),
processed smallest first, the detail the dream added carried up to the next octave; at each step
the image is rolled by a random jitter, the objective's gradient is taken, and the image moves by
`step_size / mean|grad|` along it (so the step does not depend on the objective's scale), then
is kept in the pixel range [0, 1]. Gradients are computed in tiles of a fixed size (the model's
own input size, else 256), a few tiles per ORT run, so an image of any size (2000x1500, say) costs
memory for one batch of tiles only; the roll moves the tile seams every step, so none shows.

Objectives: a layer name (mean squared activation, `deepdream`), "layer:channel", any
`Objective`, or a guide image (`guide=`): each position's features move toward the guide's
best-matching features (the notebook's `objective_guide`, written as the differentiable mean over
positions of max_j <x_i, y_j>).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np

from ..data.images import ImageLike
from ..errors import ConfigurationError, ShapeError
from ..model import Model
from .common import (
    LossFunction,
    ObjectiveValues,
    SynthesisResult,
    activations_of,
    model_at_size,
    progress_bar,
    to_uint8,
    unit_images,
)
from .losses import reduce_max
from .objectives import EmitContext, Objective, as_objective, deepdream

log = logging.getLogger("onnxlens")

DEFAULT_TILE = 256


@dataclass(frozen=True, eq=False)
class GuideMatch(Objective):
    """Mean over positions of max_j <x_i, y_j>: x_i the layer's feature vector at position i,
    y_j the guide image's at position j (the guided dream's objective)."""

    layer: str
    guide: np.ndarray  # (C, P) guide features, one column per position

    def emit(self, ctx: EmitContext) -> str:
        b = ctx.builder
        t = ctx.tensor(self.layer)
        shape = ctx.shape(t)
        c_axis = ctx.channel_axis(t)
        c = shape[c_axis]
        if len(shape) != 4 or c != self.guide.shape[0]:
            raise ShapeError(
                f"a guided dream needs a spatial layer whose channels match the guide's "
                f"features ({self.guide.shape[0]}); {self.layer!r} has shape {shape}."
            )
        if c_axis != 3:
            t = b.op("Transpose", [t], perm=[0, 2, 3, 1])
        flat = b.op("Reshape", [t, b.ints([ctx.batch, -1, c])])  # (N, P, C)
        dots = b.op("MatMul", [flat, b.const(self.guide.astype(np.float32), hint="guide")])
        best = reduce_max(ctx, dots, 2)
        return b.reduce_mean(best, [1], keepdims=False)

    @property
    def layers(self) -> list[str]:
        return [self.layer]

    def __repr__(self) -> str:
        return f"guide({self.layer!r}, {self.guide.shape[1]} positions)"


def _as_objective(objective: Objective | str) -> Objective:
    if isinstance(objective, Objective):
        return objective
    if isinstance(objective, str) and ":" in objective:
        return as_objective(objective)
    if isinstance(objective, str):
        return deepdream(objective)
    raise ConfigurationError(
        f"cannot dream of {objective!r}; pass a layer name, 'layer:channel' or an Objective."
    )


def _resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(C, H, W) float32 -> (C, h, w), bilinear."""
    h, w = size
    hwc = cv2.resize(img.transpose(1, 2, 0), (w, h), interpolation=cv2.INTER_LINEAR)
    if hwc.ndim == 2:
        hwc = hwc[:, :, None]
    return np.ascontiguousarray(hwc.transpose(2, 0, 1), dtype=np.float32)


def _starts(length: int, tile: int) -> list[tuple[int, int, int]]:
    """(start, own_from, own_to) of tiles of `tile` covering [0, length): the last one is shifted
    back to fit, and each pixel is owned by exactly one tile."""
    if length <= tile:
        return [(0, 0, length)]
    starts = list(range(0, length - tile + 1, tile))
    if starts[-1] + tile < length:
        starts.append(length - tile)
    out = []
    prev_end = 0
    for s in starts:
        out.append((s, prev_end, s + tile))
        prev_end = s + tile
    return out


def _tile_size(length: int, tile: int) -> int:
    """The smallest tile <= `tile` that covers `length` in as few tiles as `tile` would: 229
    pixels with 224-pixel tiles is 2 tiles of 115, not 2 of 224 overlapping by 219."""
    count = -(-length // tile)
    return -(-length // count)


class TiledGradient:
    """Objective values and gradients of an image of any size, tile by tile: functions compiled
    per tile shape (a few), `batch` tiles per ORT run. For gradients, tiles are at most `tile`
    pixels a side and shrink to cover an image without overlap when the fixed size would cost
    1.5x its pixels (a dream's smaller octaves: 320 px in 4 tiles of 160, not 4 of 224); `value`
    keeps the fixed size. The gradient of the sum over tiles of
    each tile's objective; `value` is the mean over tiles."""

    def __init__(self, model: Model, objective: Objective, tile: int, batch: int = 4) -> None:
        self.model, self.objective = model, objective
        self.tile, self.batch = int(tile), max(1, int(batch))
        self._functions: dict[tuple[int, int, int], LossFunction] = {}
        self._forward: dict[tuple[int, int, int], ObjectiveValues] = {}
        self._runs: dict[tuple[int, int], bool] = {}

    def _function(self, shape: tuple[int, int], n: int) -> LossFunction:
        key = (shape[0], shape[1], n)
        if key not in self._functions:
            self._functions[key] = LossFunction(self.model, self.objective, n, shape)
        return self._functions[key]

    def _runs_at(self, shape: tuple[int, int]) -> bool:
        if shape not in self._runs:
            try:
                model_at_size(self.model, shape)
                self._runs[shape] = True
            except ShapeError:
                self._runs[shape] = False
        return self._runs[shape]

    def _values(self, shape: tuple[int, int], n: int) -> ObjectiveValues:
        key = (shape[0], shape[1], n)
        if key not in self._forward:
            self._forward[key] = ObjectiveValues(self.model, {"v": self.objective}, n, shape)
        return self._forward[key]

    def _batches(self, img: np.ndarray, shrink: bool):
        """(chunk, n, tile shape, batch of tiles) per run; a short last chunk repeats its first
        tile (discarded). `shrink`: tiles shrink to cover the image without overlap where the
        fixed size would cost 1.5x its pixels."""
        _, h, w = img.shape
        th, tw = _tile_size(h, self.tile), _tile_size(w, self.tile)
        if not shrink or len(_starts(h, th)) * len(_starts(w, tw)) * th * tw * 1.5 > (
            len(_starts(h, self.tile)) * len(_starts(w, self.tile)) * min(h, self.tile)
            * min(w, self.tile)
        ):  # fmt: skip
            th, tw = min(self.tile, h), min(self.tile, w)  # re-tiling would not pay its compile
        elif (th, tw) != (min(self.tile, h), min(self.tile, w)) and not self._runs_at((th, tw)):
            th, tw = min(self.tile, h), min(self.tile, w)  # a graph bound to its size
        ys, xs = _starts(h, th), _starts(w, tw)
        tiles = [(y, x) for y in ys for x in xs]
        for i in range(0, len(tiles), self.batch):
            chunk = tiles[i : i + self.batch]
            n = len(chunk) if len(tiles) <= self.batch else self.batch
            batch = np.empty((n, img.shape[0], th, tw), np.float32)
            for j in range(n):
                (y0, _, _), (x0, _, _) = chunk[min(j, len(chunk) - 1)]
                batch[j] = img[:, y0 : y0 + th, x0 : x0 + tw]
            yield chunk, n, (th, tw), batch

    def __call__(self, img: np.ndarray) -> tuple[float, np.ndarray]:
        """img (C, H, W) -> (mean tile objective, gradient (C, H, W))."""
        grad = np.empty_like(img)  # the tiles' owned parts cover every pixel once
        values = []
        for chunk, n, shape, batch in self._batches(img, True):
            v, g = self._function(shape, n)(batch)
            for j, ((y0, yf, yt), (x0, xf, xt)) in enumerate(chunk):
                grad[:, yf:yt, xf:xt] = g[j, :, yf - y0 : yt - y0, xf - x0 : xt - x0]
                values.append(float(v[j]))
        return float(np.mean(values)), grad

    def value(self, img: np.ndarray) -> float:
        """The mean objective over tiles of the fixed size (the same measure at every octave's
        end): forward runs only, a third of a gradient's cost."""
        values: list[float] = []
        for chunk, n, shape, batch in self._batches(img, False):
            values.extend(float(v) for v in self._values(shape, n)(batch)["v"][: len(chunk)])
        return float(np.mean(values))


def dream(
    model: Model,
    image: ImageLike | np.ndarray,
    objective: Objective | str | None = None,
    layer: str | None = None,
    guide: ImageLike | np.ndarray | None = None,
    octaves: int = 4,
    octave_scale: float = 1.4,
    steps: int = 10,
    step_size: float = 1.5 / 255,
    jitter: int = 32,
    size: tuple[int, int] | None = None,
    tile: int | None = None,
    tile_batch: int = 4,
    seed: int = 0,
    progress: bool = True,
) -> SynthesisResult:
    """Deep dream of `image` (at its own size, or `size` (H, W)).

    What to amplify: `objective` (an Objective or "layer:channel"), or `layer` (its mean squared
    activation), or with `guide` an image whose features at `layer` the dream moves toward.
    `octaves` levels, each `octave_scale` smaller, `steps` per octave of `step_size` (in [0, 1]
    pixel units after dividing the gradient by its mean magnitude; the notebook's 1.5 grey
    levels), random rolls up to `jitter` pixels. `tile`: gradient tile size (default the
    model's input size, else 256), `tile_batch` tiles per run (memory: one batch of tiles).

    Curves: "objective" (mean tile objective at each step) and "objective_by_octave" (the dream
    so far, scaled to the full size, after each octave; the first entry is the photo itself).
    """
    if octaves < 1 or steps < 0:
        raise ConfigurationError(f"octaves must be >= 1 and steps >= 0, got {octaves}, {steps}.")
    if not octave_scale > 1:
        raise ConfigurationError(f"octave_scale must be > 1 (e.g. 1.4), got {octave_scale}.")
    if objective is not None and (layer is not None and guide is None):
        raise ConfigurationError("pass objective= or layer=, not both.")
    base = _load(model, image, size)
    if guide is not None:
        if layer is None:
            raise ConfigurationError("a guided dream needs layer= (the features to match).")
        gimg = unit_images(model, guide, tuple(model.input.size or (224, 224)))[:1]  # type: ignore[arg-type]
        feats = activations_of(model, gimg, [layer])[layer][0]
        if feats.ndim != 3:
            raise ShapeError(
                f"a guided dream needs a spatial layer; {layer!r} has shape {feats.shape}."
            )
        if model.layout == "NHWC":
            feats = feats.transpose(2, 0, 1)
        obj: Objective = GuideMatch(layer, feats.reshape(feats.shape[0], -1))
    elif objective is not None:
        obj = _as_objective(objective)
    elif layer is not None:
        obj = deepdream(layer)
    else:
        raise ConfigurationError("say what to dream of: layer=, objective= or guide= with layer=.")
    t = int(tile or (model.input.size[0] if model.input.size else DEFAULT_TILE))
    grad_fn = TiledGradient(model, obj, t, tile_batch)
    rng = np.random.default_rng(seed)
    _, h, w = base.shape
    shapes = [(h, w)]
    for _ in range(octaves - 1):
        ph, pw = shapes[-1]
        nh, nw = max(1, round(ph / octave_scale)), max(1, round(pw / octave_scale))
        if min(nh, nw) < 16:
            log.warning(
                "onnxlens: dream stops at %d octaves (the next would be %dx%d)", len(shapes), nh, nw
            )
            break
        shapes.append((nh, nw))
    bases = [base] + [_resize(base, s) for s in shapes[1:]]
    total = steps * len(shapes)
    bar = progress_bar(progress, total, "dream")
    curve: list[float] = []
    by_octave = [grad_fn.value(base)]
    detail = np.zeros_like(bases[-1])
    img = base
    interrupted = False
    try:
        for octave_base in reversed(bases):
            oh, ow = octave_base.shape[1:]
            if detail.shape[1:] != (oh, ow):
                detail = _resize(detail, (oh, ow))
            src = np.clip(octave_base + detail, 0.0, 1.0)
            for _ in range(steps):
                oy, ox = (int(v) for v in rng.integers(-jitter, jitter + 1, 2))
                rolled = np.roll(src, (oy, ox), axis=(1, 2))
                value, g = grad_fn(rolled)
                g = np.roll(g, (-oy, -ox), axis=(1, 2))
                src = np.clip(src + step_size / (np.abs(g).mean() + 1e-12) * g, 0.0, 1.0)
                curve.append(value)
                if bar is not None:
                    bar.update(1)
            detail = src - octave_base
            img = src if (oh, ow) == (h, w) else np.clip(base + _resize(detail, (h, w)), 0, 1)
            by_octave.append(grad_fn.value(img))
    except KeyboardInterrupt:
        interrupted = True
        log.warning("onnxlens: dream interrupted; keeping the image as it is")
    finally:
        if bar is not None:
            bar.close()
    out = img[None].astype(np.float32)
    return SynthesisResult(
        images=to_uint8(out),
        images_float=out,
        history={
            "objective": np.asarray(curve, np.float64)[:, None],
            "objective_by_octave": np.asarray(by_octave, np.float64)[:, None],
        },
        metrics={
            "objective_start": np.array([by_octave[0]]),
            "objective": np.array([by_octave[-1]]),
        },
        settings={
            "method": "dream",
            "objective": repr(obj),
            "octaves": len(shapes),
            "octave_scale": octave_scale,
            "steps": steps,
            "step_size": step_size,
            "jitter": jitter,
            "size": [h, w],
            "tile": t,
            "tile_batch": tile_batch,
            "seed": seed,
        },
        interrupted=interrupted,
    )


def _load(model: Model, image: ImageLike | np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """The photo as a [0, 1] (C, H, W) image at `size`, or at its own size."""
    if isinstance(image, np.ndarray) and image.dtype.kind == "f":
        arr = np.asarray(image, np.float32)
        return arr[0] if arr.ndim == 4 else arr
    from ..data import load_image

    rgb = load_image(image)  # type: ignore[arg-type]
    hw = tuple(size) if size is not None else tuple(rgb.shape[:2])
    return unit_images(model, rgb, hw)[0]  # type: ignore[arg-type]


__all__ = ["GuideMatch", "TiledGradient", "dream"]
