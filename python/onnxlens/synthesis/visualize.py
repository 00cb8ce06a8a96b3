"""visualize(): feature visualisation by gradient ascent, one ONNX Runtime run per step.

The loop per step: parameters -> [0, 1] image -> random transforms -> the model's preprocessing
-> model + objective (one compiled VJP run: values and input gradient) -> the adjoints back
through preprocessing, transforms and parameterisation -> minus the priors' gradients -> one
optimiser step. Every map in the chain is differentiated exactly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigurationError
from ..model import Model
from ..model.memory import release_freed_memory
from .common import to_uint8
from .compiled import ObjectiveFunction, stack_targets, vjp_bytes_per_image
from .objectives import Objective, as_objective
from .optim import Optimizer, make_optimizer
from .param import (
    PARAMETERIZATIONS,
    FFTImage,
    MacoImage,
    Parameterization,
    PixelImage,
    magnitude_spectrum,
)
from .regularizers import GREY, Projection, Regularizer
from .space import ModelSpace
from .transforms import Chain, Transform, standard_transforms

log = logging.getLogger("onnxlens")

DEFAULT_SIZE = (128, 128)


@dataclass
class Visualization:
    """What `visualize` returns.

    images: uint8 (N, H, W, 3) RGB (grey models: the channel repeated); images_float: float32
    (N, H, W, C) in [0, 1]; trajectory: float32 (steps, N), each row's objective per step (on the
    transformed image the step used); final: float32 (N,), each objective on its final,
    untransformed image; snapshots: {step: uint8 images} at the requested steps.
    """

    objectives: list[Objective]
    images: np.ndarray
    images_float: np.ndarray
    trajectory: np.ndarray
    final: np.ndarray
    snapshots: dict[int, np.ndarray] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __repr__(self) -> str:
        return (
            f"Visualization({len(self)} images {self.images.shape[1]}x{self.images.shape[2]}, "
            f"{self.trajectory.shape[0]} steps)"
        )


def _has_relus(model: Model) -> bool:
    """Whether the redirected rule set changes anything: a Relu, or a Clip (ReLU6)."""
    return any(n.op_type in ("Relu", "Clip") for n in model.proto.graph.node)


def _make_param(
    kind: str | Callable[[int], Parameterization],
    n: int,
    channels: int,
    size: tuple[int, int],
    rng: np.random.Generator,
    decorrelate: bool,
    magnitude: np.ndarray | None,
) -> Parameterization:
    if callable(kind):
        return kind(n)
    if kind == "fft":
        return FFTImage(n, channels, size, decorrelate=decorrelate, rng=rng)
    if kind == "pixel":
        return PixelImage(n, channels, size, decorrelate=decorrelate, rng=rng)
    if kind == "maco":
        assert magnitude is not None, "visualize estimates the magnitude before making params"
        return MacoImage(n, magnitude, size, decorrelate=decorrelate, rng=rng)
    raise ConfigurationError(
        f"unknown parameterisation {kind!r}; use one of {', '.join(PARAMETERIZATIONS)}."
    )


def visualize(
    model: Model,
    objectives: Objective | str | Sequence[Objective | str],
    size: tuple[int, int] | None = None,
    steps: int = 512,
    param: str | Callable[[int], Parameterization] = "fft",
    transforms: Sequence[Transform] | str | None = "standard",
    optimizer: str | Optimizer = "adam",
    lr: float | None = None,
    regularizers: Sequence[Regularizer | Projection] = (),
    decorrelate: bool = True,
    magnitude_images: Sequence[np.ndarray] | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    snapshots: Sequence[int] = (),
    redirect_steps: int = 16,
    progress: bool = True,
) -> Visualization:
    """Images that maximise each objective (one image per objective, batched).

    `objectives`: one Objective (or "layer:channel"), or a list: row i of the result maximises
    objectives[i]. `size` (H, W): the image size; the model's own for a fixed-size model,
    default 128x128 otherwise. `param`: "fft" (lucid's default), "pixel", "maco" (phase only,
    its magnitude spectrum from `magnitude_images`), or a callable n -> Parameterization.
    `transforms`: "standard" (lucid's pad/jitter/scale/rotate), None, or a list. `optimizer`:
    "adam" (lr 0.05) or "rmsprop" (keras-vis' normalised RMSprop, lr 0.01), or an Optimizer.
    `regularizers`: priors subtracted from the objective (`lp`, `total_variation`, ...) and
    Yosinski's projections applied after each step (`decay`, `blur`, `clip_norm`,
    `clip_contribution`; these need param="pixel", which then optimises raw pixels). `batch_size`
    objectives run per compiled batch (default: all, at most 16, fewer when the VJP of a batch
    would pass the model's `memory_limit`). `snapshots`: steps at which to
    keep the images. `redirect_steps`: the first steps use redirected ReLU gradients (lucid; the
    "redirected" rule set), so a channel dead on the starting image still gets a gradient; 0
    turns it off, and models without ReLU/ReLU6 never use it.
    """
    specs = [objectives] if isinstance(objectives, Objective | str) else list(objectives)
    if not specs:
        raise ConfigurationError("no objectives given; pass e.g. channel('layer', 0).")
    objs: list[Objective] = [as_objective(o) for o in specs]
    if steps < 1:
        raise ConfigurationError(f"steps must be >= 1, got {steps}.")
    model_size = model.input.size
    if size is None:
        size = model_size or DEFAULT_SIZE
    size = (int(size[0]), int(size[1]))
    if model_size is not None and tuple(model_size) != size:
        raise ConfigurationError(
            f"{model.name} takes {model_size[0]}x{model_size[1]} images; size={size} cannot be "
            "fed to it. Leave size unset."
        )
    space = ModelSpace(model.preprocess.with_overrides(size=size))
    chans = space.channels
    if transforms == "standard":
        chain = Chain(standard_transforms())
    elif transforms is None:
        chain = Chain([])
    elif isinstance(transforms, str):
        raise ConfigurationError(
            f"transforms must be 'standard', None or a list; got {transforms!r}."
        )
    else:
        chain = Chain(transforms)
    chain = chain.fitted(size)
    magnitude = None
    if param == "maco":
        if not magnitude_images:
            raise ConfigurationError(
                "param='maco' needs magnitude_images= (real photos whose mean magnitude "
                "spectrum the images keep), e.g. onnxlens.demo.demo_photos()."
            )
        magnitude = magnitude_spectrum(magnitude_images, size)
        if magnitude.shape[0] != chans:
            magnitude = np.repeat(magnitude.mean(0, keepdims=True), chans, axis=0)
    priors = [r for r in regularizers if isinstance(r, Regularizer)]
    projections = [r for r in regularizers if isinstance(r, Projection)]
    if len(priors) + len(projections) != len(regularizers):
        raise ConfigurationError(
            "regularizers takes priors (onnxlens.synthesis.regularizers.lp, total_variation, ...) "
            "and projections (decay, blur, clip_norm, clip_contribution)."
        )
    if projections and param != "pixel":
        raise ConfigurationError(
            "Yosinski's projections (decay, blur, clip_norm, clip_contribution) edit raw pixels: "
            "pass param='pixel' with them."
        )
    if redirect_steps < 0:
        raise ConfigurationError(f"redirect_steps must be >= 0, got {redirect_steps}.")
    if not _has_relus(model):
        redirect_steps = 0
    # the batch: as asked, else all objectives up to 16, within the model's memory bound
    bs = int(
        batch_size or min(len(objs), 16, model.batch_size_for(vjp_bytes_per_image(model, size)))
    )
    rng = np.random.default_rng(seed)
    keep = sorted({int(s) for s in snapshots if 0 <= int(s) <= steps})

    images, trajectories, finals = [], [], []
    snaps: dict[int, list[np.ndarray]] = {s: [] for s in keep}
    chunks = list(range(0, len(objs), bs))
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps * len(chunks), desc="visualize", unit="step", leave=False)
    interrupted = False
    done_steps = steps
    for c0 in chunks:
        chunk = objs[c0 : c0 + bs]
        n = len(chunk)
        target = stack_targets(chunk) if n > 1 else chunk[0]
        # One compiled graph alive at a time: the redirected one for the first steps, then the
        # true one (each holds a session and its arena; both at once doubled the peak memory).
        redirected = redirect_steps > 0 and steps > 0
        f: ObjectiveFunction | None = None
        release_freed_memory()  # the last chunk's sessions (glibc keeps freed memory mapped)
        if not redirected:
            f = ObjectiveFunction(model, target, n, size)
        f_start = ObjectiveFunction(model, target, n, size, rules="redirected") if redirected else f
        p: Parameterization
        if projections:  # raw pixels, starting grey with a little noise (Yosinski)
            init = GREY + 0.01 * rng.standard_normal((n, chans, *size))
            p = PixelImage(n, chans, size, decorrelate=False, sigmoid=False, init=init)
        else:
            p = _make_param(param, n, chans, size, rng, decorrelate, magnitude)
        opt = make_optimizer(optimizer, lr)
        traj = np.zeros((steps, n), np.float32)
        try:
            for step in range(steps):
                img = p.image()
                if step in snaps:
                    snaps[step].append(to_uint8(img))
                chain.sample(rng, n)
                if f is None and step >= redirect_steps:
                    f_start = None  # free the redirected session before building the true one
                    release_freed_memory()
                    f = ObjectiveFunction(model, target, n, size)
                # (no local name for the function in use: one would keep the last chunk's
                # session alive while the next chunk builds its own)
                value, gx = (f if f is not None else f_start)(space.to_model(chain.forward(img)))  # type: ignore[misc]
                g_img = chain.backward(space.backward(gx))
                for r in priors:
                    g_img -= r.weight * r.grad(img)
                opt.step(p.params, p.backward(g_img), p.batch_axis)
                if projections:
                    for proj in projections:
                        proj.apply(p.params, g_img, step)
                    np.clip(p.params, 0.0, 1.0, out=p.params)
                traj[step] = value
                if not np.isfinite(value).all():
                    raise ConfigurationError(
                        f"the objective became non-finite at step {step}; lower the learning "
                        "rate (lr=) or add a regulariser."
                    )
                if bar is not None:
                    bar.update(1)
        except KeyboardInterrupt:
            # Keep what is done: this chunk's images as they are, no further chunks.
            interrupted, done_steps = True, step
            traj = traj[:step]
        final_img = p.image()
        if steps in snaps:
            snaps[steps].append(to_uint8(final_img))
        if f is None:  # stopped (or done) within the redirected steps
            f_start = None
            f = ObjectiveFunction(model, target, n, size)
        finals.append(f.values(space.to_model(final_img)))  # a copy, not ORT's array
        f = f_start = None
        images.append(final_img)
        trajectories.append(traj)
        if interrupted:
            log.warning(
                "onnxlens: visualize interrupted at step %d; returning %d of %d images",
                done_steps, sum(len(i) for i in images), len(objs),
            )  # fmt: skip
            objs = objs[: sum(len(i) for i in images)]
            break
    if bar is not None:
        bar.close()
    img = np.concatenate(images)
    return Visualization(
        objectives=objs,
        images=to_uint8(img),
        images_float=np.ascontiguousarray(img.transpose(0, 2, 3, 1)),
        trajectory=(
            np.concatenate(trajectories, axis=1)
            if len({t.shape[0] for t in trajectories}) == 1
            else np.concatenate(
                [t[: min(x.shape[0] for x in trajectories)] for t in trajectories], axis=1
            )
        ),
        final=np.concatenate(finals),
        snapshots={s: np.concatenate(v) for s, v in snaps.items() if len(v) == len(images)},
        settings={
            "size": list(size),
            "steps": steps,
            "param": param if isinstance(param, str) else "custom",
            "transforms": transforms
            if isinstance(transforms, str) or transforms is None
            else "custom",
            "optimizer": optimizer if isinstance(optimizer, str) else type(optimizer).__name__,
            "seed": seed,
            "batch_size": bs,
            "redirect_steps": redirect_steps,
            "regularizers": [type(r).__name__ for r in regularizers],
            "interrupted": interrupted,
        },
    )
