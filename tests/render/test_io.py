from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from onnxlens.errors import ImageError, ShapeError
from onnxlens.render import safe_filename, save_png


def test_save_png_round_trip_is_rgb(tmp_path: Path) -> None:
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 0] = 200  # red
    path = save_png(tmp_path / "red.png", rgb)
    back = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(back[..., ::-1], rgb)


def test_save_png_grey(tmp_path: Path) -> None:
    grey = np.arange(20, dtype=np.uint8).reshape(4, 5)
    path = save_png(tmp_path / "g.png", grey)
    np.testing.assert_array_equal(cv2.imread(str(path), cv2.IMREAD_UNCHANGED), grey)


def test_save_png_errors(tmp_path: Path) -> None:
    with pytest.raises(ShapeError, match="uint8"):
        save_png(tmp_path / "a.png", np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ShapeError, match=r"out\[i\]"):
        save_png(tmp_path / "a.png", np.zeros((2, 4, 4, 3), np.uint8))
    with pytest.raises(ImageError, match=r"ending in \.png"):
        save_png(tmp_path / "a.jpg", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ImageError, match="does not exist"):
        save_png(tmp_path / "missing" / "a.png", np.zeros((4, 4, 3), np.uint8))


# -- safe_filename ------------------------------------------------------------------------------
SAFE_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


@pytest.mark.parametrize("name", ["conv1", "p2o.pd_op.hardswish.2.0", "Relu_3", "a-b.c_d"])
def test_safe_filename_keeps_clean_names(name: str) -> None:
    assert safe_filename(name) == name


@pytest.mark.parametrize(
    ("name", "readable"),
    [
        ("/features/features.0/Relu_output_0", "features_features.0_Relu_output_0"),
        ("a/b", "a_b"),
        ("a\\b", "a_b"),
        ("../../etc/passwd", "etc_passwd"),
        ("café", "cafe"),
        ("猫", "x"),
        ("", "x"),
        ("..", "x"),
        ("CON", "CON"),  # a Windows device name
        ("x-0123abcd", "x-0123abcd"),  # looks like a hashed result already
    ],
)
def test_safe_filename_replaced_names_get_a_hash(name: str, readable: str) -> None:
    got = safe_filename(name)
    assert set(got) <= SAFE_CHARS and not got.startswith((".", "-", "_"))
    # The readable part, then 8 hex digits of the name's SHA-256 (computed independently here).
    assert got == f"{readable}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def test_safe_filename_distinct_for_non_ascii_variants(tmp_path: Path) -> None:
    names = [
        "café",
        "cafè",
        "cafe\u0301",
        "caf\u00e9",
        "caf_",
        "caf/",
        "caf\\",
        "caf?",
        "caf",
        "cafe",
    ]
    names = list(dict.fromkeys(names))  # "café" typed two ways stays two names
    files = {safe_filename(n) for n in names}
    assert len(files) == len(names)
    # Distinct on disk too: each name writes its own file.
    for n in names:
        (tmp_path / f"{safe_filename(n)}.txt").write_text(n)
    assert sorted(p.read_text() for p in tmp_path.iterdir()) == sorted(names)


def test_safe_filename_long_names_keep_their_tail() -> None:
    a = "block" * 40 + "/conv_a"
    b = "other" * 40 + "/conv_a"
    fa, fb = safe_filename(a), safe_filename(b)
    assert len(fa) == len(fb) == 80 and fa != fb
    assert fa.endswith(f"conv_a-{hashlib.sha256(a.encode()).hexdigest()[:8]}")
    assert len(safe_filename("x" * 200, max_len=30)) == 30


def test_safe_filename_is_stable_across_processes() -> None:
    # Python's str hash is salted per process; the file name must not be.
    code = "from onnxlens.render.io import safe_filename; print(safe_filename('é/relu'))"
    runs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert runs == {safe_filename("é/relu")}
