"""Fixtures for the mining tests."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from mining_data import conv_model, photo_crops, write_folder


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("model") / "tiny.onnx"
    onnx.save(conv_model(), p)
    return p


@pytest.fixture(scope="session")
def photo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("photos")
    write_folder(root, photo_crops(40, seed=1))
    (root / "d0" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (root / "d1" / "empty.png").write_bytes(b"")
    return root
