"""The preprocessing spec against hand-written numpy."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

import onnxlens
from onnxlens.data import PreprocessSpec
from onnxlens.errors import ConfigurationError
from synthetic import tiny_cnn


def test_imagenet_default_matches_numpy():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    spec = PreprocessSpec(size=(16, 20))
    x, fitted = spec([img])
    ref = cv2.resize(img, (20, 16), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    ref = (
        (ref - np.array([0.485, 0.456, 0.406], np.float32))
        / np.array([0.229, 0.224, 0.225], np.float32)
    ).transpose(2, 0, 1)
    assert x.shape == (1, 3, 16, 20) and x.dtype == np.float32
    np.testing.assert_allclose(x[0], ref, rtol=1e-6, atol=1e-6)
    assert fitted.shape == (1, 16, 20, 3)


def test_bgr_nhwc_and_scale():
    img = np.zeros((4, 4, 3), np.uint8)
    img[..., 0] = 10  # R
    img[..., 2] = 30  # B
    spec = PreprocessSpec(
        size=(4, 4), layout="NHWC", channel_order="BGR", scale=1.0, mean=(0, 0, 0), std=(1, 1, 1)
    )
    x, _ = spec([img])
    assert x.shape == (1, 4, 4, 3)
    np.testing.assert_array_equal(x[0, 0, 0], [30, 0, 10])


@pytest.mark.parametrize("mode", ["stretch", "crop", "pad"])
def test_resize_modes_keep_size(mode):
    img = np.full((50, 100, 3), 255, np.uint8)
    fitted = PreprocessSpec(size=(32, 32), resize=mode).fit(img)
    assert fitted.shape == (32, 32, 3)
    if mode == "pad":  # letterboxed: black bars above and below
        assert fitted[0].max() == 0 and fitted[16].min() == 255
    else:
        assert fitted.min() == 255


def test_sidecar_file_is_picked_up_and_announced(tmp_path):
    p = tmp_path / "m.onnx"
    p.write_bytes(tiny_cnn().SerializeToString())
    model = onnxlens.Model(p, device="cpu")
    assert "assumed" in model.preprocess.describe()
    (tmp_path / "m.preprocess.json").write_text(
        json.dumps({"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "channel_order": "RGB"})
    )
    model = onnxlens.Model(p, device="cpu")
    assert model.preprocess.mean == (0.5, 0.5, 0.5)
    assert "mean/std" not in model.preprocess.describe() and "scale" in model.preprocess.describe()


def test_bad_specs_explained(tmp_path):
    with pytest.raises(ConfigurationError, match="mean has 2 values"):
        PreprocessSpec(mean=(0.1, 0.2))
    with pytest.raises(ConfigurationError, match="layout"):
        PreprocessSpec(layout="CHW")
    bad = tmp_path / "x.preprocess.json"
    bad.write_text(json.dumps({"means": [1, 2, 3]}))
    with pytest.raises(ConfigurationError, match="unknown keys"):
        PreprocessSpec.from_file(bad)


def test_model_images_equal_manual_tensor():
    model = onnxlens.Model(tiny_cnn(), device="cpu")
    img = np.random.default_rng(1).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    by_image = model.predict([img])
    x = model.preprocess.to_tensor(img[None])
    np.testing.assert_array_equal(by_image, model.predict(x))
