"""No output overwrites another: inputs with the same file name in different folders, names equal
but for case, names that sanitise alike (non-ASCII) and the same file given twice all get their
own outputs, each holding its own input's values, and the count printed is the count written."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

from mining_data import conv_model
from onnxlens import Model
from onnxlens.cli import main

# Relative to the working folder (the test chdirs into tmp_path): what a user types.
INPUTS = ["a/x.png", "b/x.png", "X.png", "日本.png", "中国.png", "a/x.png"]


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    onnx.save(conv_model(), tmp_path / "tiny.onnx")
    rng = np.random.default_rng(0)
    for p in dict.fromkeys(INPUTS):  # distinct pictures, so each output shows whose it is
        (tmp_path / p).parent.mkdir(parents=True, exist_ok=True)
        img = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
        _, png = cv2.imencode(".png", img)
        (tmp_path / p).write_bytes(png.tobytes())
    return tmp_path


def _distinct(names: list[str]) -> None:
    assert len({n.casefold() for n in names}) == len(names), names


def test_unique_stems_are_distinct_readable_and_stable():
    from onnxlens.render.io import OutputNames, unique_stems

    stems = unique_stems(INPUTS)
    _distinct(stems)
    assert stems[:3] == ["a_x", "b_x", "X"]  # folders tell same-named files apart
    assert stems[5] == "a_x_2"  # the same file twice: a suffix
    assert stems == unique_stems(INPUTS)
    assert unique_stems(["comparison.png.jpg"], reserved=["comparison.png"]) == ["comparison.png_2"]
    names = OutputNames()
    assert [names.take(n) for n in ("a", "A", "a", "a_2")] == ["a", "A_2", "a_3", "a_2_2"]


def _images(model: Model) -> np.ndarray:
    return model.prepare(list(INPUTS))[0]


def test_activations_one_folder_per_input(work: Path, capsys):
    from onnxlens.render.io import unique_stems

    code = main(["activations", "tiny.onnx", *INPUTS, "--layers", "r2", "--save-arrays",
                 "--out", "acts"])  # fmt: skip
    assert code == 0
    folders = sorted(p.name for p in (work / "acts").iterdir())
    assert len(folders) == len(INPUTS)
    _distinct(folders)
    model = Model(work / "tiny.onnx", device="cpu")
    acts = model.activations(_images(model), ["r2"])["r2"]
    for i, stem in enumerate(unique_stems(INPUTS)):
        np.testing.assert_allclose(np.load(work / "acts" / stem / "r2.npy"), acts[i], rtol=1e-5)
    written = len(list((work / "acts").glob("*/r2.png")))
    printed = int(re.search(r"wrote (\d+) grids", capsys.readouterr().out).group(1))
    assert printed == written == len(INPUTS)


def test_explain_one_folder_per_input(work: Path, capsys):
    from onnxlens.render.io import unique_stems

    code = main(["explain", "tiny.onnx", *INPUTS, "--method", "gradcam", "saliency",
                 "--layer", "r2", "--save-arrays", "--out", "exp"])  # fmt: skip
    assert code == 0
    folders = sorted(p.name for p in (work / "exp").iterdir() if p.is_dir())
    assert len(folders) == len(INPUTS)
    _distinct(folders)
    written = len(list((work / "exp").glob("*/*.png")))
    printed = int(re.search(r"wrote (\d+) overlays", capsys.readouterr().out).group(1))
    assert printed == written == 2 * len(INPUTS)
    from onnxlens.methods.registry import make

    model = Model(work / "tiny.onnx", device="cpu")
    heat = make("saliency", model).attribute(_images(model)).heatmap
    for i, stem in enumerate(unique_stems(INPUTS, reserved=["comparison.png"])):
        got = np.load(work / "exp" / stem / "saliency.npy")
        np.testing.assert_allclose(got, heat[i], rtol=1e-4, atol=1e-6)


def test_gradient_one_file_per_input_and_tensor(work: Path, capsys):
    from onnxlens.render.io import OutputNames

    code = main(["gradient", "tiny.onnx", *INPUTS, "--target", "1", "--wrt", "input", "r1",
                 "--out", "grad"])  # fmt: skip
    assert code == 0
    npys = sorted(p.name for p in (work / "grad").glob("*.npy"))
    assert len(npys) == 2 * len(INPUTS)
    _distinct(npys)
    printed = capsys.readouterr().out.count("wrote ")
    assert printed == len(npys) == len(list((work / "grad").glob("*.png")))
    model = Model(work / "tiny.onnx", device="cpu")
    g = model.gradient(_images(model), 1, wrt=["input"])
    g = g["input"] if isinstance(g, dict) else g
    # Files are named in the order they are written: inputs in order, per tensor.
    names = OutputNames()
    for i, src in enumerate(INPUTS):
        stem = names.take(f"{Path(src).stem}_input_default")
        np.testing.assert_allclose(
            np.load(work / "grad" / f"{stem}.npy"), g[i], rtol=1e-4, atol=1e-7
        )


def _folder(root: Path, n: int) -> Path:
    rng = np.random.default_rng(1)
    for i in range(n):
        d = root / f"c{i % 2}"
        d.mkdir(parents=True, exist_ok=True)
        _, png = cv2.imencode(".png", rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
        (d / f"{i:03d}.png").write_bytes(png.tobytes())
    return root


def test_embed_keeps_the_vectors_when_the_map_fails(tmp_path: Path, capsys):
    """Three images are too few for a 2-D map: the command fails (exit 2), but the vectors it
    computed are on disk, with their paths (before: nothing was saved)."""
    onnx.save(conv_model(), tmp_path / "tiny.onnx")
    data = _folder(tmp_path / "data", 3)
    out = tmp_path / "emb"
    code = main(["embed", str(tmp_path / "tiny.onnx"), str(data), "--layer", "r2",
                 "--out", str(out), "--quiet"])  # fmt: skip
    assert code == 2
    assert "at least 4 images" in capsys.readouterr().err
    model = Model(tmp_path / "tiny.onnx", device="cpu")
    paths = (out / "paths.txt").read_text().splitlines()
    assert paths == ["c0/000.png", "c0/002.png", "c1/001.png"]
    acts = model.activations([str(data / p) for p in paths], ["r2"])["r2"]
    np.testing.assert_allclose(np.load(out / "vectors.npy"), acts.mean((2, 3)), rtol=1e-5)
    assert not (out / "map.png").exists()


@pytest.mark.parametrize("missing", ["sklearn", "matplotlib"])
def test_embed_checks_its_dependencies_before_the_forward_pass(
    tmp_path: Path, capsys, monkeypatch, missing
):
    import sys

    onnx.save(conv_model(), tmp_path / "tiny.onnx")
    data = _folder(tmp_path / "data", 6)

    def forward(*args, **kwargs):
        raise AssertionError("the forward pass ran before the dependency check")

    monkeypatch.setattr(Model, "run_batched", forward)
    monkeypatch.setitem(sys.modules, missing, None)  # as if not installed
    code = main(["embed", str(tmp_path / "tiny.onnx"), str(data), "--layer", "r2",
                 "--out", str(tmp_path / "emb"), "--quiet"])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    package = {"sklearn": "scikit-learn", "matplotlib": "matplotlib"}[missing]
    assert f"pip install {package}" in err and "onnxlens[embed]" in err
