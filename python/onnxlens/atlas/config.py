"""What an atlas run is: its settings (`AtlasConfig`), the choice of layers and channels, and
the identity that guards resuming (`atlas.json` in the output folder).

A rerun with the same identity continues where a killed run stopped; a different model, DATA
listing, layer set, channel set or synthesis setting refuses to resume, naming what differs,
unless `restart=True` (`--restart`). Engine, worker counts and progress bars are not part of
the identity: they cannot change a single byte of the data files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ConfigurationError
from ..methods.activations import default_layers, spatial_layers
from ..model import Model
from ..render.io import safe_filename

log = logging.getLogger("onnxlens")

ATLAS_VERSION = 1
DEFAULT_LAYERS = 4
DEFAULT_CHANNELS = 16
ChannelSpec = int | str | Sequence[int] | Mapping[str, Sequence[int]] | None


def layer_file(name: str) -> str:
    """The file stem of a layer (its page, its folders): the mining result's own."""
    return safe_filename(name)


def batch_seed(seed: int, kind: str, layer: str, batch: int) -> int:
    """The seed of one visualisation batch: a function of the batch alone, so batches give the
    same images in any order, on any engine, after any resume."""
    digest = hashlib.sha256(f"{seed}\0{kind}\0{layer}\0{batch}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


@dataclass(frozen=True)
class AtlasConfig:
    """The identity of an atlas run (`out/atlas.json`). `channels` maps each layer to the
    channels visualised and paged; mining always covers every channel of the layers."""

    model_sha256: str
    model_name: str
    data: str
    data_fingerprint: str
    items: int
    layers: tuple[str, ...]
    channels: dict[str, list[int]]
    layer_channels: dict[str, int]
    steps: int
    size: tuple[int, int]
    top_k: int
    seed: int
    vis_batch: int
    classes: str | list[int]
    stats_images: int
    embed_layer: str | None
    link_images: int = 8
    preprocess: dict = field(default_factory=dict)
    version: int = ATLAS_VERSION

    def to_json(self) -> dict:
        d = asdict(self)
        d["layers"] = list(self.layers)
        d["size"] = list(self.size)
        return json.loads(json.dumps(d, sort_keys=True))

    def differences(self, saved: dict) -> list[str]:
        now = self.to_json()
        what = {
            "version": "the atlas format version",
            "model_sha256": "the model (its bytes)",
            "data_fingerprint": "DATA (files, order, sizes or modification times)",
            "layers": "the layers (--layers)",
            "channels": "the channels (--channels)",
            "steps": "--steps",
            "size": "--size",
            "top_k": "--top-k",
            "seed": "--seed",
            "vis_batch": "--vis-batch",
            "classes": "the classes (--classes)",
            "stats_images": "--stats-images",
            "embed_layer": "the embedding layer",
            "link_images": "--link-images",
            "preprocess": "the preprocessing",
        }
        out = []
        for key, msg in what.items():
            if saved.get(key) != now.get(key):
                out.append(f"{msg} differs")
        return out


def check_count(value: object, what: str, lo: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < lo:
        raise ConfigurationError(f"{what} must be an integer >= {lo}, got {value!r}.")
    return int(value)


def choose_layers(
    model: Model, layers: Sequence[str] | str | None, n: int = DEFAULT_LAYERS
) -> list[str]:
    """Tensor names of `layers`, or `n` layers spread over the depth (announced on stderr)."""
    if isinstance(layers, str):
        layers = [layers]
    if layers:
        names = list(dict.fromkeys(model.resolve(name) for name in layers))
        order = {la.name: i for i, la in enumerate(model.layers)}
        # Depth order, whatever order they were given in: "previous layer" means the one before.
        return sorted(names, key=lambda t: order.get(t, -1))
    chosen = default_layers(model, n)
    if not chosen:
        raise ConfigurationError(
            f"{model.name} has no spatial feature maps to chart; pass --layers L1 [L2 ...] "
            "(see `onnxlens inspect MODEL`)."
        )
    log.info(
        "onnxlens: atlas layers (a spread over depth; choose with --layers): %s", ", ".join(chosen)
    )
    return chosen


def channel_count(model: Model, layer: str) -> int | None:
    """A layer's channel count from its static shape (by its own layout), None when unknown."""
    la = model.layer(layer)
    shape = la.shape
    if shape is None:
        return None
    if len(shape) == 4:
        axis = la.layout.index("C") if la.layout and "C" in la.layout else 1
    elif len(shape) == 2:
        axis = 1
    else:
        return None
    c = shape[axis]
    return int(c) if isinstance(c, int) else None


def choose_channels(
    spec: ChannelSpec, layers: Sequence[str], counts: Mapping[str, int]
) -> dict[str, list[int]]:
    """Per layer, the channels to visualise: None or "all": every channel; an int N: channels
    0..N-1 (Microscope's order, predictable across runs); a list: those channels of every
    layer; a mapping: per layer (layers it leaves out get DEFAULT_CHANNELS)."""
    out: dict[str, list[int]] = {}
    for name in layers:
        c = counts[name]
        s: object = spec
        if isinstance(spec, Mapping):
            s = spec.get(name, DEFAULT_CHANNELS)
        if s is None or s == "all":
            chans = list(range(c))
        elif isinstance(s, numbers.Integral) and not isinstance(s, bool):
            chans = list(range(min(check_count(s, "--channels"), c)))
        elif isinstance(s, str):
            raise ConfigurationError(f"--channels takes a count or 'all', got {s!r}.")
        else:
            try:
                chans = sorted(dict.fromkeys(int(x) for x in s))  # type: ignore[attr-defined]
            except (TypeError, ValueError):
                raise ConfigurationError(
                    f"--channels takes a count, 'all', channel indices or {{layer: indices}}; got {s!r}."
                ) from None
            bad = [x for x in chans if not 0 <= x < c]
            if bad or not chans:
                raise ConfigurationError(
                    f"layer {name!r} has channels 0..{c - 1}; {bad or 'no channels'} given. "
                    "Pass channel indices in that range."
                )
        out[name] = chans
    return out


def embed_layer_for(model: Model) -> str | None:
    """The layer the embedding map uses: the last global pooling output (the classifier's
    input in most CNNs), else the last spatial feature map."""
    pools = [la.name for la in model.layers if la.op in ("GlobalAveragePool", "GlobalMaxPool")]
    if pools:
        return pools[-1]
    spatial = spatial_layers(model)
    return spatial[-1].name if spatial else None


def classifier_classes(model: Model) -> int | None:
    """The class count of the first output when it is (N, K) with K >= 2, else None."""
    dims = model.proto.graph.output[0].type.tensor_type.shape.dim
    if len(dims) != 2 or not dims[1].HasField("dim_value") or dims[1].dim_value < 2:
        return None
    return int(dims[1].dim_value)


def read_saved(out: Path) -> dict | None:
    p = out / "atlas.json"
    if not p.exists():
        return None
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def sample_indices(n: int, k: int) -> list[int]:
    """`k` dataset indices evenly spread over `n` items (all of them when k >= n)."""
    if k >= n:
        return list(range(n))
    return sorted(set(np.linspace(0, n - 1, k).round().astype(int).tolist()))
