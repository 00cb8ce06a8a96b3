"""Test scaffolding for the attribution tests: a small plain-torch CNN, ONNX export, and the
import of pytorch-grad-cam without torchvision.

pytorch-grad-cam imports torchvision at package import time only for helpers the CAM maths never
calls: `torchvision.transforms` (Compose/Normalize/ToTensor in utils/image.py's
`preprocess_image`), `torchvision.transforms.functional.resize` (sess.py, the SESS wrapper) and
`torchvision.ops.box_iou` (detection targets in utils/model_targets.py). BaseCAM, the weight
functions, ActivationsAndGradients, scale_cam_image (cv2 + scipy) and get_2d_projection (numpy)
do not touch them. torchvision cannot be installed beside torch 2.13 here, so the stand-ins
below raise if anything does call them.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the parity nets need torch (onnxlens[test])")
nn = torch.nn

IR_VERSION = 10


def _unavailable(name: str):
    def f(*args, **kwargs):
        raise RuntimeError(
            f"torchvision stand-in: {name} is test scaffolding and must not be called"
        )

    return f


def import_pytorch_grad_cam():
    """`pytorch_grad_cam`, with stand-in torchvision modules if the real one is missing."""
    try:
        import torchvision  # noqa: F401
    except ImportError:
        tv = types.ModuleType("torchvision")
        tr = types.ModuleType("torchvision.transforms")
        fn = types.ModuleType("torchvision.transforms.functional")
        ops = types.ModuleType("torchvision.ops")
        for name in ("Compose", "Normalize", "ToTensor"):
            setattr(tr, name, _unavailable(f"transforms.{name}"))
        fn.resize = _unavailable("transforms.functional.resize")
        ops.box_iou = _unavailable("ops.box_iou")
        tr.functional = fn
        tv.transforms, tv.ops = tr, ops
        sys.modules.update(
            {
                "torchvision": tv,
                "torchvision.transforms": tr,
                "torchvision.transforms.functional": fn,
                "torchvision.ops": ops,
            }
        )
    return pytest.importorskip("pytorch_grad_cam", reason="pip install --no-deps grad-cam ttach")


class SmallVGG(nn.Module):
    """Conv-ReLU stacks (one ReLU module per use, as captum's hooks need), max pooling, GAP, FC."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        chans = [(3, 16), (16, 16), "M", (16, 32), (32, 32), "M", (32, 48)]
        layers: list[nn.Module] = []
        for c in chans:
            if c == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(c[0], c[1], 3, padding=1), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(48, classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def small_vgg(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = SmallVGG()
    with torch.no_grad():  # larger biases so ReLUs are neither all-on nor all-off
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                m.bias.uniform_(-0.1, 0.3)
    return net.eval()


def export(net: nn.Module, path: Path, size: tuple[int, int], opset: int = 17) -> Path:
    import warnings

    import onnx

    x = torch.randn(2, 3, *size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (x,),
            str(path),
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=opset,
            dynamo=False,
        )
    proto = onnx.load(str(path))
    if proto.ir_version > IR_VERSION:
        proto.ir_version = IR_VERSION
        onnx.save(proto, str(path))
    return path


def corr(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    return float(np.corrcoef(a, b)[0, 1])


def images(n: int, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """Smooth random inputs (blobs, not white noise) so maps have structure."""
    import cv2

    rng = np.random.default_rng(seed)
    small = rng.standard_normal((n, 3, max(2, size[0] // 8), max(2, size[1] // 8))).astype(
        np.float32
    )
    return np.stack(
        [
            np.stack([cv2.resize(c, size[::-1], interpolation=cv2.INTER_CUBIC) for c in s])
            for s in small
        ]
    ).astype(np.float32)
