"""Method names as used by the CLI and the demo (`gradcam`, `ig`, ...) -> classes."""

from __future__ import annotations

from .base import Method
from .cam import (
    CAM,
    AblationCAM,
    EigenCAM,
    GradCAM,
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    ScoreCAM,
    XGradCAM,
)
from .gradients import (
    Deconvolution,
    GuidedBackprop,
    GuidedGradCAM,
    InputXGradient,
    IntegratedGradients,
    Saliency,
    SmoothGrad,
)
from .perturbation import Occlusion

METHODS: dict[str, type[Method]] = {
    "gradcam": GradCAM,
    "gradcam++": GradCAMPlusPlus,
    "xgradcam": XGradCAM,
    "hirescam": HiResCAM,
    "layercam": LayerCAM,
    "eigencam": EigenCAM,
    "scorecam": ScoreCAM,
    "ablationcam": AblationCAM,
    "cam": CAM,
    "saliency": Saliency,
    "smoothgrad": SmoothGrad,
    "ixg": InputXGradient,
    "ig": IntegratedGradients,
    "guided": GuidedBackprop,
    "deconvnet": Deconvolution,
    "guidedgradcam": GuidedGradCAM,
    "occlusion": Occlusion,
}


def make(name: str, model, layer=None, **kwargs) -> Method:
    """An instance of method `name`; `layer` is passed only to the methods that take one."""
    cls = METHODS[name]
    if cls.needs_layer and layer is not None:
        kwargs["layer"] = layer
    return cls(model, **kwargs)
