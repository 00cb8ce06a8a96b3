"""Fixtures for the attribution tests: the same torch weights in torch and as ONNX."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import nets


@pytest.fixture(scope="session")
def vgg(tmp_path_factory: pytest.TempPathFactory):
    """(torch net, Model, inputs (2, 3, 64, 64)) of the small VGG-like net."""
    from onnxlens import Model

    net = nets.small_vgg(0)
    path = nets.export(net, tmp_path_factory.mktemp("vgg") / "vgg.onnx", (64, 64))
    return net, Model(path, threads=2), nets.images(2, (64, 64), seed=1)


@pytest.fixture(scope="session")
def resnet18(tmp_path_factory: pytest.TempPathFactory):
    """(torch ResNet-18 from tests/zoo.py with random BN statistics, Model, inputs (2, 3, 112, 112))."""
    import torch

    from onnxlens import Model
    from zoo import randomize, resnet18

    torch.manual_seed(0)
    net = randomize(resnet18(), seed=0)
    path = nets.export(net, tmp_path_factory.mktemp("r18") / "r18.onnx", (112, 112))
    return net, Model(path, threads=2), nets.images(2, (112, 112), seed=2)
