"""Method names as used by the CLI and the demo (`gradcam`, `ig`, ...) -> classes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..model import Model
from . import cam, gradients, perturbation
from .base import Method

METHODS: dict[str, type[Method]] = {
    "gradcam": cam.GradCAM,
    "gradcam++": cam.GradCAMPlusPlus,
    "xgradcam": cam.XGradCAM,
    "hirescam": cam.HiResCAM,
    "layercam": cam.LayerCAM,
    "eigencam": cam.EigenCAM,
    "scorecam": cam.ScoreCAM,
    "ablationcam": cam.AblationCAM,
    "cam": cam.CAM,
    "saliency": gradients.Saliency,
    "smoothgrad": gradients.SmoothGrad,
    "ixg": gradients.InputXGradient,
    "ig": gradients.IntegratedGradients,
    "guided": gradients.GuidedBackprop,
    "deconvnet": gradients.Deconvolution,
    "guidedgradcam": gradients.GuidedGradCAM,
    "occlusion": perturbation.Occlusion,
}


def make(
    name: str, model: Model | str, layer: str | Sequence[str] | None = None, **kwargs: Any
) -> Method:
    """An instance of method `name`; `layer` is passed only to the methods that take one.

    `kwargs` are constructor settings (`output=`, `progress=`, `abs=`, ...); per-call knobs
    (`n_steps=`, `nt_samples=`, `sliding_window_shapes=`, ...) go to the instance's `attribute`."""
    cls = METHODS[name]
    if cls.needs_layer and layer is not None:
        kwargs["layer"] = layer
    return cls(model, **kwargs)
