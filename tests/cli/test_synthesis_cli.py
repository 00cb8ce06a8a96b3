"""`onnxlens dream | invert | texture | style | fool` end to end on a small model: the files
written, and the JSON's figures re-measured from the PNGs with plain activations and numpy."""

from __future__ import annotations

import json

import cv2
import numpy as np
import onnx
import pytest

import onnxlens
from onnxlens.cli import main
from onnxlens.synthesis.space import ModelSpace
from synthetic import tiny_cnn


def _png(path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def _save(path, rgb) -> str:
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return str(path)


@pytest.fixture
def setup(tmp_path):
    model_path = tmp_path / "tiny.onnx"
    onnx.save(tiny_cnn(size=16), model_path)
    rng = np.random.default_rng(0)
    photo = _save(tmp_path / "photo.png", (rng.random((16, 16, 3)) * 255).astype(np.uint8))
    stripes = np.zeros((16, 16, 3), np.uint8)
    stripes[::3] = 230
    texture = _save(tmp_path / "stripes.png", stripes)
    return str(model_path), photo, texture, tmp_path


def _acts(model_path, img_u8, layer):
    m = onnxlens.Model(model_path, device="cpu")
    space = ModelSpace(m.preprocess.with_overrides(size=img_u8.shape[:2]))
    x = space.to_model(img_u8.transpose(2, 0, 1)[None].astype(np.float32) / 255)
    return m.activations(x, [layer])[layer].astype(np.float64)


def test_dream_cli(setup, capsys) -> None:
    model, photo, _, tmp = setup
    out = tmp / "dream"
    argv = ["dream", model, photo, "--layer", "relu_out", "--octaves", "2", "--steps", "3"]
    assert main([*argv, "--tile", "64", "--jitter", "2", "--out", str(out), "--quiet"]) == 0
    assert "wrote dream.png" in capsys.readouterr().out
    rec = json.loads((out / "dream.json").read_text())
    img = _png(out / "dream.png")
    assert img.shape == (16, 16, 3) and _png(out / "sheet.png").shape[1] > 32
    final = rec["history"]["objective_by_octave"][-1][0]
    # one tile covers the image: the objective is mean(A^2) of the whole (8-bit) image
    assert (_acts(model, img, "relu_out") ** 2).mean() == pytest.approx(final, rel=0.03)


def test_invert_cli(setup, capsys) -> None:
    model, photo, _, tmp = setup
    out = tmp / "invert"
    argv = ["invert", model, photo, "--layers", "conv_out", "relu_out", "--steps", "40"]
    assert main([*argv, "--out", str(out), "--quiet"]) == 0
    assert "wrote 2 inversions" in capsys.readouterr().out
    rec = json.loads((out / "invert.json").read_text())
    target = _acts(model, _png(photo), "conv_out")
    got = _acts(model, _png(out / "invert_00.png"), "conv_out")
    err = ((got - target) ** 2).sum() / (target**2).sum()
    assert err == pytest.approx(rec["metrics"]["feature_error"][0], rel=0.1, abs=2e-3)
    assert len(rec["history"]["loss"]) == 40


def test_texture_and_style_cli(setup, capsys) -> None:
    model, photo, texture, tmp = setup
    out = tmp / "texture"
    argv = ["texture", model, texture, "--size", "20", "24", "--layers", "conv_out", "relu_out"]
    assert main([*argv, "--steps", "40", "--out", str(out), "--quiet"]) == 0
    rec = json.loads((out / "texture.json").read_text())
    assert _png(out / "texture.png").shape == (20, 24, 3)
    assert rec["metrics"]["style"][0] < rec["metrics"]["style_start"][0]
    out = tmp / "style"
    argv = [
        "style",
        model,
        photo,
        texture,
        "--content-layer",
        "conv_out",
        "--style-layers",
        "relu_out",
    ]
    assert main([*argv, "--steps", "20", "--out", str(out), "--quiet"]) == 0
    assert "content loss" in capsys.readouterr().out
    rec = json.loads((out / "style.json").read_text())
    phi0 = _acts(model, _png(photo), "conv_out")
    phi = _acts(model, _png(out / "style.png"), "conv_out")
    ref = ((phi - phi0) ** 2).mean() / (phi0**2).mean()
    assert ref == pytest.approx(rec["metrics"]["content"][0], rel=0.1, abs=2e-3)
    assert rec["settings"]["style_layers"] == ["relu_out"]


def test_fool_cli(setup, capsys) -> None:
    model, photo, _, tmp = setup
    out = tmp / "fool"
    argv = ["fool", model, photo, photo, "--eps", "8/255", "--steps", "5", "--loss", "margin"]
    assert main([*argv, "--out", str(out), "--quiet"]) == 0
    assert "success" in capsys.readouterr().out
    rec = json.loads((out / "fool.json").read_text())
    adv, clean = _png(out / "fool_00.png").astype(int), _png(photo).astype(int)
    assert np.abs(adv - clean).max() <= 8  # the PNG stays in the ball, on the 8-bit grid
    m = onnxlens.Model(model, device="cpu")
    assert int(m.predict(adv[None].astype(np.uint8)).argmax()) == rec["metrics"]["prediction"][0]
    assert _png(out / "sheet.png").shape[1] > 6 * 16  # original, perturbation, result per photo
    out2 = tmp / "noise"
    assert (
        main(["fool", model, "--from-noise", "--target", "2", "--out", str(out2), "--quiet"]) == 0
    )
    assert (out2 / "noise_0002.png").exists()


def test_synthesis_cli_errors(setup, capsys) -> None:
    model, photo, _, tmp = setup
    assert main(["fool", model, photo, "--eps", "four", "--out", str(tmp / "x")]) == 2
    assert "4/255" in capsys.readouterr().err
    assert main(["fool", model, "--out", str(tmp / "x")]) == 2
    assert main(["dream", model, photo, "--out", str(tmp / "x")]) == 2
    assert "--layer" in capsys.readouterr().err


def test_ctrl_c_keeps_what_is_done(setup, capsys, monkeypatch) -> None:
    from onnxlens.synthesis import common

    model, photo, _, tmp = setup
    real = common.LossFunction.__call__
    calls = {"n": 0}

    def interrupt_later(self, img):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt
        return real(self, img)

    monkeypatch.setattr(common.LossFunction, "__call__", interrupt_later)
    out = tmp / "inv"
    assert (
        main(
            [
                "invert",
                model,
                photo,
                "--layers",
                "conv_out",
                "--steps",
                "50",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 130
    )
    rec = json.loads((out / "invert.json").read_text())
    assert rec["interrupted"] and len(rec["history"]["loss"]) == 5
    assert (out / "invert_00.png").exists()
