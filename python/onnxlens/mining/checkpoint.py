"""The on-disk checkpoint of finished shards, under `DIR/state/`.

`config.json` (what the run is: model hash, layers, k, score, shard size, preprocessing, DATA
fingerprint; see `MiningConfig`) and one `shard-<index>.npz` per finished shard (per layer the
serialised top-k state, plus the shard's skipped items). Every file is written atomically, so a
killed run leaves whole shards or none, and resuming skips exactly the finished ones.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..errors import ConfigurationError
from .config import MiningConfig
from .files import atomic_save_npz, atomic_write
from .topk import TopKState, load_topk

log = logging.getLogger("onnxlens")


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
        found = set()
        for p in self.dir.glob("shard-*.npz"):
            try:
                found.add(int(p.stem.split("-")[1]))
            except ValueError:  # not a name this module writes
                continue
        return found

    def verified(self, layers: list[str]) -> set[int]:
        """The finished shards whose files read back whole; a damaged one (truncated, garbled,
        written by something else) is logged, deleted and so recomputed by the run."""
        ok: set[int] = set()
        for index in sorted(self.done()):
            try:
                self.load_shard(index, layers)
            except ConfigurationError as exc:
                log.warning("onnxlens: %s; recomputing that shard.", exc.args[0].split(";")[0])
                self.shard_path(index).unlink(missing_ok=True)
            else:
                ok.add(index)
        return ok

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
        except Exception as exc:  # zipfile, numpy, json and the top-k loaders all raise their own
            raise ConfigurationError(
                f"checkpoint {str(self.shard_path(index))!r} is damaged ({exc}); delete it to recompute "
                "that shard, or pass --restart."
            ) from exc
        return states, skipped  # type: ignore[return-value]
