"""The exception hierarchy. Every user-facing failure is one of these, with the fix in its message."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "ConfigurationError",
    "ImageError",
    "LayerNotFoundError",
    "ModelLoadError",
    "OnnxLensError",
    "ShapeError",
    "UnsupportedOperatorError",
]


class OnnxLensError(Exception):
    """Base class of every error onnxlens raises on purpose. The CLI prints these without a traceback."""


class ModelLoadError(OnnxLensError):
    """The model file is missing, truncated, not ONNX, invalid, or its external data is unsafe."""


class LayerNotFoundError(OnnxLensError, KeyError):
    """A layer (tensor or node) name that the model does not have."""

    def __init__(
        self, name: str, candidates: Iterable[str], model_hint: str = "model.onnx"
    ) -> None:
        self.name = name
        close = difflib.get_close_matches(name, list(candidates), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else "."
        msg = f"layer {name!r} not found{hint} Run `onnxlens inspect {model_hint}` to list the layers."
        super().__init__(msg)

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class UnsupportedOperatorError(OnnxLensError):
    """An operator onnxlens cannot handle where it is needed (names the op, the node and the path)."""


class ImageError(OnnxLensError):
    """An image that cannot be read or converted (corrupt, empty, unsupported layout)."""


class ShapeError(OnnxLensError, ValueError):
    """Inputs or arrays whose shape or dtype does not fit what was asked."""


class ConfigurationError(OnnxLensError, ValueError):
    """Options that contradict each other or the model (bad preprocessing spec, device, target...)."""
