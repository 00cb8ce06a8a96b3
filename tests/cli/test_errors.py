"""User errors end in one line and exit code 2, never a traceback: a bad `--out` before any work,
OS errors, ONNX Runtime rejecting an input, OpenCV errors, and library messages spelled as the
CLI's flags."""

from __future__ import annotations

import argparse
import errno
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from mining_data import conv_model
from onnxlens.cli import main
from onnxlens.cli.common import run_command

ROOT = Path(__file__).resolve().parents[2]


def flat_model() -> onnx.ModelProto:
    """x (N, 3, H, W) with dynamic H, W -> Conv 3x3 pad 1 (4) -> Relu -> Flatten -> MatMul: the
    head fits only 8x8 inputs, so another --size fails inside ONNX Runtime, not in a check."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(0, 0.5, (4, 3, 3, 3)).astype(np.float32), "w")
    fc = numpy_helper.from_array(rng.normal(0, 0.1, (4 * 8 * 8, 5)).astype(np.float32), "fc")
    nodes = [
        helper.make_node(
            "Conv", ["x", "w"], ["c"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]
        ),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Flatten", ["r"], ["f"], name="flat"),
        helper.make_node("MatMul", ["f", "fc"], ["logits"], name="fc"),
    ]
    graph = helper.make_graph(
        nodes,
        "flat",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 5])],
        [w, fc],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    onnx.save(conv_model(), tmp_path / "tiny.onnx")
    onnx.save(flat_model(), tmp_path / "flat.onnx")
    img = np.random.default_rng(0).integers(0, 255, (40, 48, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "img.png"), img)
    (tmp_path / "a_file").write_text("not a folder")
    return {
        "tiny": str(tmp_path / "tiny.onnx"),
        "flat": str(tmp_path / "flat.onnx"),
        "img": str(tmp_path / "img.png"),
        "file": str(tmp_path / "a_file"),
        "dir": str(tmp_path),
    }


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "onnxlens", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )


# Every command that takes --out; MODEL is a path that does not exist, so an error about --out
# proves the check ran before any work (the model is the first thing every command loads).
COMMANDS = {
    "activations": ["activations", "missing.onnx", "img.png"],
    "filters": ["filters", "missing.onnx"],
    "gradient": ["gradient", "missing.onnx", "img.png", "--target", "1"],
    "explain": ["explain", "missing.onnx", "img.png"],
    "visualize": ["visualize", "missing.onnx", "--classes", "1"],
    "mine": ["mine", "missing.onnx", "data", "--layers", "r1"],
    "embed": ["embed", "missing.onnx", "data", "--layer", "r1"],
    "demo": ["demo"],
}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_out_that_is_a_file_fails_before_any_work(files, capsys, command):
    assert main([*COMMANDS[command], "--out", files["file"]]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "is a file" in err and "missing.onnx" not in err
    assert Path(files["file"]).read_text() == "not a folder"


def _unwritable(tmp_path: Path) -> Path:
    """A folder this process cannot write into: chmod works for normal users; root writes
    through permissions, so for root a folder under /proc (no one creates files there)."""
    if os.geteuid() == 0:
        return Path("/proc/onnxlens-test-not-writable/out")
    d = tmp_path / "readonly"
    d.mkdir()
    d.chmod(0o500)
    return d / "out"


@pytest.mark.parametrize("command", ["activations", "filters", "gradient", "explain", "mine"])
def test_out_not_writable_fails_before_any_work(files, capsys, tmp_path, command):
    out = _unwritable(tmp_path)
    assert main([*COMMANDS[command], "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "name a folder you can write to" in err
    assert "missing.onnx" not in err


def test_out_under_a_file_is_refused(files, capsys):
    assert main([*COMMANDS["explain"], "--out", files["file"] + "/sub"]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def test_onnxruntime_input_error_exits_2_with_the_flags_to_fix_it(files):
    """The flat model's head takes only 8x8; at 16x16 its MatMul fails inside ONNX Runtime
    (before: an onnxruntime Fail traceback, exit 1)."""
    r = _cli(
        "explain", files["flat"], files["img"], "--method", "saliency",
        "--size", "16", "16", "--out", files["dir"] + "/o",
    )  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert "the model rejected its input" in r.stderr and "--size H W" in r.stderr


def _gradient_at_wrong_size(files: dict[str, str], capsys: pytest.CaptureFixture[str]) -> str:
    code = main(
        ["gradient", files["flat"], files["img"], "--target", "1", "--size", "16", "16",
         "--out", files["dir"] + "/g"]
    )  # fmt: skip
    assert code == 2
    return capsys.readouterr().err


def test_gradient_at_a_size_the_model_cannot_take_exits_2(files, capsys):
    err = _gradient_at_wrong_size(files, capsys)
    # The first time, ORT's shape inference rejects the VJP graph built for 16x16 (reported by
    # runtime/ as a model-load error); once that graph is cached, the run itself fails and the
    # CLI names --size. Either way: one line, exit 2. (No "Traceback" check in-process: the
    # CLI's log handler may hold a stream an earlier test's capsys closed.)
    assert "onnxlens: error:" in err
    assert "Incompatible dimensions" in err or "--size" in err
    again = _gradient_at_wrong_size(files, capsys)
    assert "onnxlens: error:" in again


def mlp_model() -> onnx.ModelProto:
    """x (N, 3, 8, 8) -> Flatten -> MatMul: no spatial layer for a CAM."""
    fc = numpy_helper.from_array(np.full((3 * 8 * 8, 5), 0.01, np.float32), "fc")
    nodes = [
        helper.make_node("Flatten", ["x"], ["f"], name="flat"),
        helper.make_node("MatMul", ["f", "fc"], ["logits"], name="fc"),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 5])],
        [fc],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def test_library_messages_use_the_cli_flags(files, tmp_path):
    """Errors and log lines of the library say `--layer`, the flag, not the Python keyword
    `layer=`: a CAM on a model without a spatial layer (an error), and the note naming the
    layer a CAM picked (a log line)."""
    onnx.save(mlp_model(), tmp_path / "mlp.onnx")
    r = _cli("explain", str(tmp_path / "mlp.onnx"), files["img"], "--out", files["dir"] + "/m")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "--layer" in r.stderr and "layer=" not in r.stderr
    r = _cli("explain", files["flat"], files["img"], "--size", "8", "8", "--out", files["dir"])
    assert r.returncode == 0, r.stderr
    assert "layer=" not in r.stderr


def test_cli_spelling_only_where_the_command_has_the_flag():
    from onnxlens.cli.common import cli_spelling

    ns = argparse.Namespace(layer=None, size=None, wrt=["input"])
    assert cli_spelling("x; pass layer= (see it)", ns) == "x; pass --layer (see it)"
    assert cli_spelling("pass input_shape=(N, C, H, W) to it", ns) == "pass --size H W to it"
    assert cli_spelling("a tensor after it (wrt=...).", ns) == "a tensor after it (--wrt ...)."
    # No such flag on this command: the message stays as the library wrote it.
    assert cli_spelling("pass grid=(h, w)", ns) == "pass grid=(h, w)"
    assert cli_spelling("pass layer=", argparse.Namespace(layers=None)) == "pass --layers"


def test_os_error_while_writing_outputs_exits_2(files, tmp_path, capsys):
    """A file where the command wants a folder (out/img exists as a file): an OSError deep in
    the command (before: NotADirectoryError traceback)."""
    out = tmp_path / "acts"
    out.mkdir()
    (out / "img").write_text("in the way")
    code = main(["activations", files["tiny"], files["img"], "--layers", "r1", "--out", str(out)])
    assert code == 2
    err = capsys.readouterr().err
    assert "cannot access" in err and "img" in err and "permissions" in err


@pytest.mark.parametrize(
    "exc,expect",
    [
        (OSError(errno.ENOSPC, "No space left on device", "out/x.png"), "free disk space"),
        (PermissionError(errno.EACCES, "Permission denied", "DATA/x.jpg"), "Permission denied"),
    ],
)
def test_os_errors_become_one_line(capsys, exc, expect):
    def fail(args: argparse.Namespace) -> int:
        raise exc

    assert run_command(argparse.Namespace(func=fail)) == 2
    err = capsys.readouterr().err
    assert err.startswith("onnxlens: error: cannot access") and expect in err
    assert exc.filename in err and len(err.strip().splitlines()) == 1


def test_opencv_error_becomes_one_line(capsys):
    def fail(args: argparse.Namespace) -> int:
        cv2.resize(np.zeros((0, 0), np.uint8), (3, 3))  # a real cv2.error
        return 0

    assert run_command(argparse.Namespace(func=fail)) == 2
    err = capsys.readouterr().err
    assert "OpenCV failed" in err and "!ssize.empty()" in err and len(err.strip().splitlines()) == 1


def test_a_bug_keeps_its_traceback():
    """Only user errors are caught: a programming error still raises (and shows its traceback)."""

    def bug(args: argparse.Namespace) -> int:
        return 1 // 0

    with pytest.raises(ZeroDivisionError):
        run_command(argparse.Namespace(func=bug))
