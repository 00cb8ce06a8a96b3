"""Synthesis: images made by gradient ascent on an objective (feature visualisation).

``visualize(model, [channel("layer", c) for c in range(16)])`` renders what each channel responds
to. Objectives are part of the compiled VJP graph (`ObjectiveFunction`), so each optimisation
step is one ONNX Runtime run; parameterisations (`FFTImage`, `PixelImage`, `MacoImage`),
transforms and priors are differentiated exactly in numpy around it.
"""

from __future__ import annotations

from . import regularizers, transforms
from .compiled import ObjectiveFunction, stack_targets
from .objectives import (
    Objective,
    alignment,
    as_objective,
    channel,
    class_logit,
    deepdream,
    direction,
    diversity,
    neuron,
)
from .optim import Adam, Optimizer, RMSprop
from .param import FFTImage, MacoImage, Parameterization, PixelImage, magnitude_spectrum
from .visualize import Visualization, visualize

__all__ = [
    "Adam",
    "FFTImage",
    "MacoImage",
    "Objective",
    "ObjectiveFunction",
    "Optimizer",
    "Parameterization",
    "PixelImage",
    "RMSprop",
    "Visualization",
    "alignment",
    "as_objective",
    "channel",
    "class_logit",
    "deepdream",
    "direction",
    "diversity",
    "magnitude_spectrum",
    "neuron",
    "regularizers",
    "stack_targets",
    "transforms",
    "visualize",
]
