"""Algorithms over the model's sessions: activations, attribution methods, faithfulness metrics."""

from __future__ import annotations

from .base import Method
from .cam import (
    CAM,
    AblationCAM,
    BaseCAM,
    EigenCAM,
    GradCAM,
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    ScoreCAM,
    XGradCAM,
)
from .explanation import Explanation
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

__all__ = [
    "CAM",
    "AblationCAM",
    "BaseCAM",
    "Deconvolution",
    "EigenCAM",
    "Explanation",
    "GradCAM",
    "GradCAMPlusPlus",
    "GuidedBackprop",
    "GuidedGradCAM",
    "HiResCAM",
    "InputXGradient",
    "IntegratedGradients",
    "LayerCAM",
    "Method",
    "Occlusion",
    "Saliency",
    "ScoreCAM",
    "SmoothGrad",
    "XGradCAM",
]
