"""ONNX Runtime: device choice, one cached session per graph variant, batched runs, shape probes."""

from __future__ import annotations

from .batching import batch_size_for, run_batched
from .device import resolve_providers
from .session import GraphKey, SessionCache, make_session

__all__ = [
    "GraphKey",
    "SessionCache",
    "batch_size_for",
    "make_session",
    "resolve_providers",
    "run_batched",
]
