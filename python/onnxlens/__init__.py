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
from .model import Model

__version__ = "0.1.0"

__all__ = [
    "ConfigurationError",
    "ImageError",
    "LayerNotFoundError",
    "Model",
    "ModelLoadError",
    "OnnxLensError",
    "PreprocessSpec",
    "ShapeError",
    "UnsupportedOperatorError",
    "__version__",
    "errors",
    "load_image",
]
