"""onnxlens: see inside convolutional networks from their exported ONNX files."""

from __future__ import annotations

from . import errors
from .data import PreprocessSpec, load_image
from .errors import (
    ConfigurationError,
    ImageError,
    LayerNotFoundError,
    ModelLoadError,
    OnnxLensError,
    ShapeError,
    UnsupportedOperatorError,
)
from .methods import (
    CAM,
    AblationCAM,
    Deconvolution,
    EigenCAM,
    Explanation,
    GradCAM,
    GradCAMPlusPlus,
    GuidedBackprop,
    GuidedGradCAM,
    HiResCAM,
    InputXGradient,
    IntegratedGradients,
    LayerCAM,
    Occlusion,
    Saliency,
    ScoreCAM,
    SmoothGrad,
    XGradCAM,
)
from .methods.metrics import deletion, insertion, sanity_check
from .model import Model

__version__ = "0.1.0"

__all__ = [
    "CAM",
    "AblationCAM",
    "ConfigurationError",
    "Deconvolution",
    "EigenCAM",
    "Explanation",
    "GradCAM",
    "GradCAMPlusPlus",
    "GuidedBackprop",
    "GuidedGradCAM",
    "HiResCAM",
    "ImageError",
    "InputXGradient",
    "IntegratedGradients",
    "LayerCAM",
    "LayerNotFoundError",
    "Model",
    "ModelLoadError",
    "Occlusion",
    "OnnxLensError",
    "PreprocessSpec",
    "Saliency",
    "ScoreCAM",
    "ShapeError",
    "SmoothGrad",
    "UnsupportedOperatorError",
    "XGradCAM",
    "__version__",
    "deletion",
    "errors",
    "insertion",
    "load_image",
    "sanity_check",
]
