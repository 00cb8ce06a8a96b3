"""Top-k state, mining configuration, and the on-disk checkpoint of finished shards.

The per-channel top-k is `onnxlens._core.TopK` (C++: a threshold gate, then an ordered insert);
`NumpyTopK` is the same contract in numpy, used as the reference and where the extension lacks it.
The order is total (value descending, then image id ascending, then payload), so a state depends
only on the set of (value, id, payload) entries it saw: batch sizes, shard order and engines
cannot change a result, and merging per-shard states is exact.

Checkpoint layout under `DIR/state/`: `config.json` (what the run is: model hash, layers, k,
score, shard size, preprocessing, DATA fingerprint) and one `shard-<index>.npz` per finished shard
(per layer the serialised state, plus the shard's skipped items). Files are written to a temporary
name and moved into place with os.replace, so a kill leaves either the whole file or none.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..errors import ConfigurationError

FORMAT_VERSION = 1
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


# -- configuration ------------------------------------------------------------------------------
@dataclass(frozen=True)
class MiningConfig:
    """What makes two runs the same run. Batch size, engine and worker counts are not part of it:
    they cannot change the result."""

    model_sha256: str
    model_name: str
    data: str
    data_kind: str
    data_fingerprint: str
    items: int
    layers: tuple[str, ...]
    channels: tuple[int, ...]
    top_k: int
    score: str
    shard_size: int
    preprocess: dict = field(default_factory=dict)
    image_size: tuple[int, int] = (0, 0)
    format_version: int = FORMAT_VERSION

    def to_json(self) -> dict:
        d = asdict(self)
        d["layers"] = list(self.layers)
        d["channels"] = list(self.channels)
        d["image_size"] = list(self.image_size)
        return d

    @classmethod
    def from_json(cls, d: dict) -> MiningConfig:
        d = dict(d)
        d["layers"] = tuple(d["layers"])
        d["channels"] = tuple(d["channels"])
        d["image_size"] = tuple(d["image_size"])
        d["preprocess"] = _normalise(d.get("preprocess", {}))
        return cls(**d)

    def differences(self, other: MiningConfig) -> list[str]:
        a, b = self.to_json(), other.to_json()
        a["preprocess"], b["preprocess"] = _normalise(a["preprocess"]), _normalise(b["preprocess"])
        what = {
            "model_sha256": "the model changed (its bytes or its external weights hash differently)",
            "data_fingerprint": "DATA changed (different files, order, sizes or modification times)",
            "layers": "the layers differ",
            "top_k": "--top-k differs",
            "score": "--score differs",
            "shard_size": "the shard size differs",
            "preprocess": "the preprocessing differs",
            "format_version": "the state format version differs",
            "items": "the number of DATA items differs",
        }
        out = []
        for key, msg in what.items():
            if a[key] != b[key]:
                out.append(f"{msg}: {_short(a[key])} in DIR vs {_short(b[key])} now")
        return out


def _normalise(d: dict) -> dict:
    return json.loads(json.dumps(d, sort_keys=True))


def _short(v: Any) -> str:
    s = json.dumps(v) if not isinstance(v, str) else v
    return s if len(s) <= 60 else s[:28] + "…" + s[-28:]


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# -- atomic files -------------------------------------------------------------------------------
def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` so readers (and a resumed run) see all of it or nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_save_npz(path: Path, **arrays: np.ndarray) -> None:
    import io

    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]  # mypy: the dict could hold a key "allow_pickle"
    atomic_write(path, buf.getvalue())


class Checkpoint:
    """Finished shards of one run under `DIR/state/`."""

    def __init__(self, out: Path) -> None:
        self.dir = Path(out) / "state"

    @property
    def config_path(self) -> Path:
        return self.dir / "config.json"

    def shard_path(self, index: int) -> Path:
        return self.dir / f"shard-{index:06d}.npz"

    def read_config(self) -> MiningConfig | None:
        if not self.config_path.exists():
            return None
        try:
            return MiningConfig.from_json(json.loads(self.config_path.read_text()))
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise ConfigurationError(
                f"{str(self.config_path)!r} is unreadable ({exc}); pass --restart to start over."
            ) from exc

    def begin(self, config: MiningConfig, restart: bool, out: Path) -> None:
        """Start or resume: refuses a DIR started by a different run, and says why and how."""
        old = self.read_config()
        if old is not None and not restart:
            diffs = old.differences(config)
            if diffs:
                raise ConfigurationError(
                    f"{str(out)!r} holds a mining run with another configuration, so it cannot be "
                    "resumed: " + "; ".join(diffs) + ". Use a new --out DIR, or pass --restart to "
                    "discard the finished shards in it."
                )
        if restart:
            self.clear()
        atomic_write(
            self.config_path, json.dumps(config.to_json(), indent=1, sort_keys=True).encode()
        )

    def clear(self) -> None:
        if self.dir.exists():
            for p in self.dir.iterdir():
                if p.name == "config.json" or (
                    p.name.startswith(("shard-", ".shard-")) and p.suffix in (".npz", ".tmp")
                ):
                    p.unlink()

    def done(self) -> set[int]:
        if not self.dir.exists():
            return set()
        return {int(p.stem.split("-")[1]) for p in self.dir.glob("shard-*.npz")}

    def save_shard(
        self,
        index: int,
        layers: Iterable[str],
        states: dict[str, TopKState],
        skipped: list[tuple[str, str]],
    ) -> None:
        arrays = {
            f"layer{i}": np.frombuffer(states[name].serialise(), np.uint8)
            for i, name in enumerate(layers)
        }
        arrays["skipped"] = np.frombuffer(json.dumps(skipped).encode(), np.uint8)
        atomic_save_npz(self.shard_path(index), **arrays)

    def load_shard(
        self, index: int, layers: list[str]
    ) -> tuple[dict[str, TopKState], list[tuple[str, str]]]:
        try:
            with np.load(self.shard_path(index)) as z:
                states = {
                    name: load_topk(z[f"layer{i}"].tobytes()) for i, name in enumerate(layers)
                }
                skipped = [tuple(s) for s in json.loads(z["skipped"].tobytes().decode())]
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigurationError(
                f"checkpoint {str(self.shard_path(index))!r} is damaged ({exc}); delete it to recompute "
                "that shard, or pass --restart."
            ) from exc
        return states, skipped  # type: ignore[return-value]
