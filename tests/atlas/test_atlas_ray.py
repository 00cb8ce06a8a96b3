"""engine="ray" (a local Ray of 2 CPUs: mining shards and visualisation batches as Ray work)
writes the same site data, byte for byte, as the local engine."""

from __future__ import annotations

from pathlib import Path

import pytest
from atlas_data import TINY, data_files

pytest.importorskip("ray.data", reason="the Ray engine needs ray[data] (onnxlens[ray])")


@pytest.mark.slow  # starting Ray takes 10-40 s
def test_ray_engine_gives_the_local_site(
    tiny_atlas, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ray

    from onnxlens.atlas import build_atlas
    from onnxlens.mining import RayOptions

    model, data, local = tiny_atlas

    def local_engine(*args: object, **kwargs: object) -> None:
        raise AssertionError("engine='ray' ran work on the local engine")

    # Neither local engine may run: every mining shard and visualisation batch goes to Ray.
    monkeypatch.setattr("onnxlens.atlas.engines.run_local", local_engine)
    monkeypatch.setattr("onnxlens.mining.local.run_local", local_engine)
    out = tmp_path / "ray"
    build_atlas(
        model, data, out, engine="ray", ray=RayOptions(num_cpus=2, cpus_per_actor=1), **TINY
    )
    got, want = data_files(out), data_files(local.out)
    assert sorted(got) == sorted(want)
    assert [n for n in want if got[n] != want[n]] == []
    assert len(list((out / "mining" / "state").glob("shard-*.npz"))) == 4  # 24 images / 6
    assert not ray.is_initialized()  # the Ray it started is shut down again
