"""Backward rules, one module per operator family; importing this package registers them all."""

from __future__ import annotations

from . import (  # noqa: F401
    activations,
    conv,
    elementwise,
    linear,
    normalization,
    pooling,
    reductions,
    resize,
    shape_ops,
    softmax,
)
