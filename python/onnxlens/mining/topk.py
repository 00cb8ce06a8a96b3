"""Per-channel top-k states: the C++ `onnxlens._core.TopK` and its numpy reference `NumpyTopK`.

`NumpyTopK` is the same contract in numpy, used as the reference and where the extension lacks it.
The order is total (value descending, then image id ascending, then payload), so a state depends
only on the set of (value, id, payload) entries it saw: batch sizes, shard order and engines
cannot change a result, and merging per-shard states is exact.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from ..errors import ConfigurationError

PAYLOAD = 2  # (row, col) of the argmax in the layer grid


class TopKState(Protocol):
    def update(self, values: np.ndarray, ids: np.ndarray, payload: np.ndarray | None) -> None: ...
    def merge(self, other: Any) -> None: ...
    def serialise(self) -> bytes: ...
    def values(self) -> np.ndarray: ...
    def ids(self) -> np.ndarray: ...
    def payload(self) -> np.ndarray: ...
    def counts(self) -> np.ndarray: ...


class NumpyTopK:
    """Per-channel top-k in numpy with the `_core.TopK` contract (reference implementation).

    Empty slots hold value NaN, id -1, payload -1; NaN values are ignored; `counts` is the number of
    filled slots per channel (min(k, non-NaN values seen)), as in the C++ state.
    """

    MAGIC = b"OLNPTOPK"

    def __init__(self, channels: int, k: int, payload_size: int = 0) -> None:
        self.c, self.k, self.p = int(channels), int(k), int(payload_size)
        self._v = np.full((self.c, self.k), np.nan, np.float32)
        self._i = np.full((self.c, self.k), -1, np.int64)
        self._p = np.full((self.c, self.k, self.p), -1, np.int32)
        self._n = np.zeros(self.c, np.int64)

    def _absorb(self, v: np.ndarray, i: np.ndarray, p: np.ndarray) -> None:
        v = np.concatenate([self._v, v], axis=1)
        i = np.concatenate([self._i, i], axis=1)
        p = np.concatenate([self._p, p], axis=1)
        nan = np.isnan(v)
        neg = np.where(nan, 0.0, -v.astype(np.float64))
        keys = [p[..., j] for j in range(self.p - 1, -1, -1)] + [i, neg, nan]
        order = np.lexsort(keys, axis=-1)[:, : self.k]
        self._v = np.take_along_axis(v, order, 1)
        self._i = np.take_along_axis(i, order, 1)
        self._p = np.take_along_axis(p, order[..., None], 1)
        empty = np.isnan(self._v)
        self._i[empty] = -1
        self._p[empty] = -1
        self._n = (~empty).sum(1).astype(np.int64)

    def update(
        self, values: np.ndarray, ids: np.ndarray, payload: np.ndarray | None = None
    ) -> None:
        values = np.asarray(values, np.float32)
        n = values.shape[0]
        v = values.T
        i = np.broadcast_to(np.asarray(ids, np.int64)[None, :], (self.c, n))
        if self.p:
            p = np.asarray(payload, np.int32).transpose(1, 0, 2)
        else:
            p = np.zeros((self.c, n, 0), np.int32)
        self._absorb(v, i, p)

    def merge(self, other: NumpyTopK) -> None:
        self._absorb(other._v, other._i, other._p)

    def serialise(self) -> bytes:
        head = np.array([self.c, self.k, self.p], np.int64).tobytes()
        return (
            self.MAGIC
            + head
            + self._n.tobytes()
            + self._v.tobytes()
            + self._i.tobytes()
            + self._p.tobytes()
        )

    @classmethod
    def deserialise(cls, data: bytes) -> NumpyTopK:
        if data[:8] != cls.MAGIC:
            raise ValueError("not a NumpyTopK state")
        c, k, p = np.frombuffer(data, np.int64, 3, 8)
        t = cls(int(c), int(k), int(p))
        off = 32
        t._n = np.frombuffer(data, np.int64, c, off).copy()
        off += 8 * c
        t._v = np.frombuffer(data, np.float32, c * k, off).reshape(c, k).copy()
        off += 4 * c * k
        t._i = np.frombuffer(data, np.int64, c * k, off).reshape(c, k).copy()
        off += 8 * c * k
        t._p = np.frombuffer(data, np.int32, c * k * p, off).reshape(c, k, p).copy()
        return t

    def values(self) -> np.ndarray:
        return self._v.copy()

    def ids(self) -> np.ndarray:
        return self._i.copy()

    def payload(self) -> np.ndarray:
        return self._p.copy()

    def counts(self) -> np.ndarray:
        return self._n.copy()


def core_topk_class() -> Any | None:
    try:
        import onnxlens._core as _core
    except ImportError:
        return None
    return getattr(_core, "TopK", None)


def new_topk(
    channels: int, k: int, payload_size: int = PAYLOAD, backend: str = "auto"
) -> TopKState:
    """A fresh state: the C++ one when built ("auto"/"core"), else numpy ("numpy")."""
    cls = core_topk_class() if backend in ("auto", "core") else None
    if cls is None:
        if backend == "core":
            raise ConfigurationError(
                "onnxlens._core has no TopK; rebuild the extension (pip install -e .) or use backend='numpy'."
            )
        return NumpyTopK(channels, k, payload_size)
    return cls(channels, k, payload_size)


def load_topk(data: bytes) -> TopKState:
    if data[:8] == NumpyTopK.MAGIC:
        return NumpyTopK.deserialise(data)
    cls = core_topk_class()
    if cls is None:
        raise ConfigurationError(
            "this checkpoint was written by the C++ top-k, which this build of onnxlens lacks; rebuild "
            "the extension or re-run with --restart."
        )
    return cls.deserialise(data)
