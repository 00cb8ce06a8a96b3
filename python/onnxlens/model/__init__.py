"""The Model: an exported ONNX model composed of its graph, ORT sessions and gradient component.

Nothing below this package (graph, runtime, autodiff, data, render) imports it; the methods,
mining, synthesis, report, CLI and demo layers build on it.
"""

from __future__ import annotations

from ..graph.inputs import InputInfo
from .core import DEFAULT_MEMORY_LIMIT, Inputs, Model
from .gradients import Gradients, VJPVariant
from .targets import Target

__all__ = [
    "DEFAULT_MEMORY_LIMIT",
    "Gradients",
    "InputInfo",
    "Inputs",
    "Model",
    "Target",
    "VJPVariant",
]
