"""What a mining run is: the job (`MiningJob`), how Ray runs it (`RayOptions`), and the identity
of a run on disk (`MiningConfig`, with the model hash that guards resuming).

`MiningJob` and `RayOptions` are frozen, so one object travels unchanged from `mine` through the
local and Ray engines (Ray pickles it to every actor). `MiningConfig` is what `DIR/state/config.json`
holds: a resumed run must match it field by field.
"""

from __future__ import annotations

import hashlib
import json
import numbers
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import onnx
from onnx import external_data_helper

from ..errors import ConfigurationError
from ..graph.reduce import SCORES

if TYPE_CHECKING:
    from ..model import Model

FORMAT_VERSION = 1
DEFAULT_SHARD = 1024


def _count(value: int | None, what: str) -> int | None:
    """`value` as an int >= 1 (None stays None: "use the default")."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ConfigurationError(f"{what} must be an integer >= 1, got {value!r}.")
    return int(value)


@dataclass(frozen=True)
class MiningJob:
    """What to mine and write: for every channel of `layers`, the `top_k` images by spatial
    `score` ("max" or "mean"), in checkpointed shards of `shard_size` images, run `batch_size`
    images per forward pass (None: 32, or the model's fixed batch), with patch galleries or not.

    `mine` builds one from its keywords and passes it whole to the engines, with `layers`
    resolved to tensor names. Batch size cannot change a result; the rest is part of the run's
    identity (see `MiningConfig`).
    """

    layers: tuple[str, ...]
    top_k: int = 16
    score: str = "max"
    batch_size: int | None = None
    shard_size: int = DEFAULT_SHARD
    galleries: bool = True

    def __post_init__(self) -> None:
        # Normalised here, once, so every engine and the checkpoint see the same types.
        layers = (self.layers,) if isinstance(self.layers, str) else tuple(self.layers)
        if self.score not in SCORES:
            raise ConfigurationError(
                f"--score must be one of {', '.join(SCORES)}; got {self.score!r}."
            )
        if int(self.top_k) < 1:
            raise ConfigurationError(f"--top-k must be >= 1, got {self.top_k}.")
        if self.batch_size is not None and int(self.batch_size) < 1:
            raise ConfigurationError(f"--batch-size must be >= 1, got {self.batch_size}.")
        if int(self.shard_size) < 1:
            raise ConfigurationError(f"--shard-size must be >= 1, got {self.shard_size}.")
        if not layers:
            raise ConfigurationError(
                "no layers given; pass --layers L1 [L2 ...] (see `onnxlens inspect MODEL`)."
            )
        object.__setattr__(self, "layers", layers)
        object.__setattr__(self, "top_k", int(self.top_k))
        object.__setattr__(
            self, "batch_size", None if self.batch_size is None else int(self.batch_size)
        )
        object.__setattr__(self, "shard_size", int(self.shard_size))
        object.__setattr__(self, "galleries", bool(self.galleries))


@dataclass(frozen=True)
class RayOptions:
    """How the Ray engine (`engine="ray"`) runs a job; none of it changes a result.

    `address`: a Ray cluster to join ("auto" for the one this machine belongs to); None starts a
    local Ray here with `num_cpus` CPUs (None: all of them). `actors`: model actors (None: the
    cluster's CPUs // `cpus_per_actor`, never more than there are shards). `cpus_per_actor`: the
    CPUs each actor reserves, which are also its ONNX Runtime intra-op threads.
    """

    address: str | None = None
    num_cpus: int | None = None
    actors: int | None = None
    cpus_per_actor: int = 1

    def __post_init__(self) -> None:
        for name, flag in (
            ("num_cpus", "--ray-cpus"),
            ("actors", "--ray-actors"),
            ("cpus_per_actor", "--ray-cpus-per-actor"),
        ):
            what = f"{flag} (RayOptions.{name})"
            object.__setattr__(self, name, _count(getattr(self, name), what))
        if self.cpus_per_actor is None:
            raise ConfigurationError(
                "--ray-cpus-per-actor (RayOptions.cpus_per_actor) must be an integer >= 1, got None."
            )

    def actor_count(self, cluster_cpus: int, shards: int) -> int:
        """Actors for `shards` shards on a cluster of `cluster_cpus` CPUs: an idle actor would
        still hold its model session and CPUs, so never more than one per shard."""
        n = self.actors or max(1, cluster_cpus // self.cpus_per_actor)
        return max(1, min(n, shards))


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


def model_sha256(model: Model) -> str:
    """The model file's sha256, chained with those of its external-data files when it has any
    (weights saved beside a large model); the serialised proto when it came from memory."""
    if model.path is not None and model.path.is_file():
        digest = file_sha256(model.path)
        locations = _external_locations(model.path)
        if not locations:
            return digest
        h = hashlib.sha256(digest.encode())
        for loc in locations:
            h.update(loc.encode() + b"\0" + file_sha256(model.path.parent / loc).encode())
        return h.hexdigest()
    return hashlib.sha256(model.proto.SerializeToString(deterministic=True)).hexdigest()


def _external_locations(path: Path) -> list[str]:
    """Sorted external-data file names the model at `path` refers to (load already checked they
    stay inside its folder)."""
    proto = onnx.load(str(path), load_external_data=False)
    found: set[str] = set()
    for t in external_data_helper._get_all_tensors(proto):
        if external_data_helper.uses_external_data(t):
            found.update(e.value for e in t.external_data if e.key == "location")
    return sorted(found)
