"""Synthesis: images made by gradient ascent on an objective (feature visualisation).

``visualize(model, [channel("layer", c) for c in range(16)])`` renders what each channel responds
to. Objectives are part of the compiled VJP graph (`ObjectiveFunction`), so each optimisation
step is one ONNX Runtime run; parameterisations (`FFTImage`, `PixelImage`, `MacoImage`),
transforms and priors are differentiated exactly in numpy around it.
"""

from __future__ import annotations

from . import regularizers, transforms
from .common import SynthesisResult, model_at_size
from .compiled import ObjectiveFunction, stack_targets
from .dream import dream
from .fool import fool, fooling_images
from .invert import invert
from .losses import (
    content_loss,
    cross_entropy,
    feature_loss,
    gram_matrix,
    logit_margin,
    style_loss,
)
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
from .style import style_transfer, texture
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
    "SynthesisResult",
    "Visualization",
    "alignment",
    "as_objective",
    "channel",
    "class_logit",
    "content_loss",
    "cross_entropy",
    "deepdream",
    "direction",
    "diversity",
    "dream",
    "feature_loss",
    "fool",
    "fooling_images",
    "gram_matrix",
    "invert",
    "logit_margin",
    "magnitude_spectrum",
    "model_at_size",
    "neuron",
    "regularizers",
    "stack_targets",
    "style_loss",
    "style_transfer",
    "texture",
    "transforms",
    "visualize",
]
