"""ONNX graph handling: loading and validation, layer naming, and rewriting (taps).

Graph edits never mutate their input: they return a new ModelProto and draw new names from one
:class:`NameGenerator` so they never collide with the model's own.
"""

from __future__ import annotations

from .layers import Layer, list_layers, resolve_tensor
from .load import load_model, weightless
from .naming import NameGenerator
from .taps import add_outputs

__all__ = [
    "Layer",
    "NameGenerator",
    "add_outputs",
    "list_layers",
    "load_model",
    "resolve_tensor",
    "weightless",
]
