"""ONNX Runtime sessions: device choice, one cached session per graph variant."""

from __future__ import annotations

from .device import resolve_providers
from .session import SessionCache, make_session

__all__ = ["SessionCache", "make_session", "resolve_providers"]
