"""The Ray engine (local Ray, 2 CPUs) gives exactly the local engine's result."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mining_data import photo_crops, write_folder
from onnxlens.mining import RayOptions, mine

pytest.importorskip("ray.data", reason="the Ray engine needs ray[data] (onnxlens[ray])")


def test_ray_equals_local(tiny_model_path: Path, tmp_path: Path) -> None:
    data = tmp_path / "d"
    write_folder(data, photo_crops(36, seed=12))
    (data / "d1" / "bad.png").write_bytes(b"\x89PNG broken")
    kw = dict(top_k=5, shard_size=8, progress=False, galleries=False)
    local = mine(tiny_model_path, data, ["c1", "r2"], tmp_path / "local", batch_size=4, **kw)
    remote = mine(
        tiny_model_path,
        data,
        ["c1", "r2"],
        tmp_path / "ray",
        batch_size=6,
        engine="ray",
        ray=RayOptions(num_cpus=2, cpus_per_actor=1),
        **kw,
    )
    for name in ("c1", "r2"):
        for f in ("values", "ids", "paths", "positions", "boxes", "counts"):
            np.testing.assert_array_equal(remote[name][f], local[name][f])
    assert remote.skipped == local.skipped and len(remote.skipped) == 1
    assert len(list((tmp_path / "ray" / "state").glob("shard-*.npz"))) == 5
