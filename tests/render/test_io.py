from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from onnxlens.errors import ImageError, ShapeError
from onnxlens.render import save_png


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
