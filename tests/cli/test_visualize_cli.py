"""`onnxlens visualize` end to end: files written, values in the JSON re-measured from the PNGs
with plain activations, and --data beside a real mining run on EfficientNet-Lite0."""

from __future__ import annotations

import json

import cv2
import numpy as np
import onnx
import pytest

import onnxlens
from onnxlens.cli import main
from synthetic import tiny_cnn


def _png(path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def test_channels_write_pngs_grid_and_trajectories(tmp_path, capsys) -> None:
    path = tmp_path / "tiny.onnx"
    onnx.save(tiny_cnn(size=16), path)
    out = tmp_path / "out"
    argv = ["visualize", str(path), "--layer", "relu_out", "--channels", "1-3,2", "--steps", "30"]
    assert main([*argv, "--out", str(out), "--quiet", "--tv", "0.1"]) == 0
    assert "wrote 3 visualisations" in capsys.readouterr().out
    record = json.loads((out / "visualize.json").read_text())
    assert record["settings"]["regularizers"] == ["TotalVariation"]
    model = onnxlens.Model(path, device="cpu")
    for t, c in zip(record["targets"], (1, 2, 3), strict=True):
        img = _png(out / t["file"])
        assert img.shape == (16, 16, 3) and len(t["trajectory"]) == 30
        act = model.activations(img[None], ["relu_out"])["relu_out"][0, c].mean()
        # the JSON's final value is of the float image; the PNG rounds it to 8 bits
        assert act == pytest.approx(t["final"], rel=0.02, abs=1e-3)
        assert t["final"] > t["trajectory"][0]
    assert _png(out / "grid.png").shape[0] > 16


@pytest.mark.slow
def test_data_scores_against_a_real_mining_run(efficientnet_path, photos, tmp_path, capsys):
    data = tmp_path / "photos"
    data.mkdir()
    for i, img in enumerate(photos):
        cv2.imwrite(str(data / f"p{i}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    out = tmp_path / "out"
    layer = "/_blocks.13/Add_output_0"
    argv = ["visualize", str(efficientnet_path), "--layer", layer, "--channels", "3,7"]
    argv += ["--steps", "24", "--data", str(data), "--patches", "3", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    assert "visualisation / dataset max" in capsys.readouterr().out
    assert (out / "mining" / "result.json").exists() and (out / "beside_data.png").exists()
    record = json.loads((out / "visualize.json").read_text())
    model = onnxlens.Model(efficientnet_path, device="cpu")
    acts = model.activations(photos, [layer])[layer]  # (photos, C, h, w): the dataset, by hand
    for t, c in zip(record["targets"], (3, 7), strict=True):
        vis = model.activations(_png(out / t["file"])[None], [layer])[layer][0, c].max()
        best = acts[:, c].max()
        d = t["dataset"]
        assert d["dataset_max"] == pytest.approx(best, rel=1e-4)
        assert d["visualisation"] == pytest.approx(vis, rel=1e-4)
        assert d["ratio"] == pytest.approx(vis / best, rel=1e-3)
        assert d["patch_values"] == sorted(d["patch_values"], reverse=True)
    # a second call reuses the finished result instead of mining again
    argv[argv.index("--data") + 1] = str(out / "mining")
    assert main([*argv[:-3], "--out", str(tmp_path / "again"), "--quiet"]) == 0
