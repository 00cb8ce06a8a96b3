"""The `onnxlens gradient` command (its parser alone, then through the main CLI)."""

from __future__ import annotations

import argparse

import cv2
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnxlens.cli import gradient as cli_gradient


def _tiny_model(path):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    fc = rng.standard_normal((4, 5)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["input", "w"], ["c"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("Relu", ["c"], ["r"], name="relu1"),
        helper.make_node("GlobalAveragePool", ["r"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("MatMul", ["f", "fc"], ["logits"]),
    ]
    g = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 32, 32])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 5])],
        initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(fc, "fc")],
    )
    onnx.save(
        helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=10), path
    )


def test_gradient_command_writes_arrays_and_images(tmp_path, capsys):
    _tiny_model(tmp_path / "m.onnx")
    img = (np.random.default_rng(1).random((40, 50, 3)) * 255).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), img)
    parser = argparse.ArgumentParser()
    cli_gradient.add_parser(parser.add_subparsers())
    args = parser.parse_args(
        [
            "gradient",
            str(tmp_path / "m.onnx"),
            str(tmp_path / "a.png"),
            "--target",
            "2",
            "--wrt",
            "input",
            "relu1",
            "--rules",
            "guided",
            "--out",
            str(tmp_path / "out"),
            "--device",
            "cpu",
        ]
    )
    assert args.func(args) == 0
    out = capsys.readouterr().out
    g = np.load(tmp_path / "out" / "a_input_guided.npy")
    assert g.shape == (3, 32, 32) and np.abs(g).max() > 0
    png = cv2.imread(str(tmp_path / "out" / "a_input_guided.png"), cv2.IMREAD_UNCHANGED)
    assert png.shape == (32, 32) and png.max() == 255
    np.testing.assert_array_equal(png, cli_gradient.gradient_image(g, (32, 32)))
    assert (tmp_path / "out" / "a_relu1_guided.npy").exists() and "wrote" in out


def test_wired_into_onnxlens_main(tmp_path):
    from onnxlens.cli import main

    _tiny_model(tmp_path / "m.onnx")
    cv2.imwrite(str(tmp_path / "b.png"), np.full((32, 32, 3), 128, np.uint8))
    rc = main(
        [
            "gradient",
            str(tmp_path / "m.onnx"),
            str(tmp_path / "b.png"),
            "--target",
            "1",
            "--out",
            str(tmp_path / "o"),
            "--device",
            "cpu",
        ]
    )
    assert rc == 0 and (tmp_path / "o" / "b_input_default.png").exists()
    assert (
        main(
            [
                "gradient",
                str(tmp_path / "m.onnx"),
                str(tmp_path / "b.png"),
                "--target",
                "9",
                "--out",
                str(tmp_path / "o"),
                "--device",
                "cpu",
            ]
        )
        == 2
    )
