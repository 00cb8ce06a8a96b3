"""Feature inversion: the loop lowers the feature error on a small model, and on EfficientNet-Lite0
with its real weights it reconstructs a photo from an early layer (error <= 0.05) and still
matches the last spatial layer (error < 0.2), with the PSNR falling with depth."""

from __future__ import annotations

import numpy as np
import pytest

import onnxlens
from onnxlens import synthesis as S
from onnxlens.errors import ConfigurationError
from onnxlens.synthesis.common import activations_of, unit_images
from synthetic import tiny_cnn


@pytest.fixture(scope="module")
def tiny():
    return onnxlens.Model(tiny_cnn(size=16), device="cpu")


def _feature_error(model, img, target, layer):
    """Independent of the loss graph: numpy on the activations of both images."""
    a = activations_of(model, img, [layer])[layer].astype(np.float64)
    b = activations_of(model, target, [layer])[layer].astype(np.float64)
    return ((a - b) ** 2).sum((1, 2, 3)) / (b**2).sum((1, 2, 3))


def test_invert_lowers_the_feature_error(tiny) -> None:
    photo = np.random.default_rng(0).integers(0, 256, (20, 20, 3), dtype=np.uint8)
    res = S.invert(tiny, photo, ["conv_out", "relu_out"], size=(16, 16), steps=60, progress=False)
    assert res.images.shape == (2, 16, 16, 3) and res.images.dtype == np.uint8
    assert 0 <= res.images_float.min() and res.images_float.max() <= 1
    target = unit_images(tiny, photo, (16, 16))
    for i, layer in enumerate(["conv_out", "relu_out"]):
        err = _feature_error(tiny, res.images_float[i : i + 1], target, layer)[0]
        np.testing.assert_allclose(res.metrics["feature_error"][i], err, rtol=1e-3, atol=1e-6)
        assert err < 0.5 * res.history["feature_error"][0, i]
    # the curves are one row per step and layer; the PSNR is against the fitted original
    assert res.history["loss"].shape == (60, 2)
    mse = ((res.images_float - target) ** 2).reshape(2, -1).mean(1)
    np.testing.assert_allclose(res.metrics["psnr"], 10 * np.log10(1 / mse), rtol=1e-6)


def test_invert_errors(tiny) -> None:
    photo = np.zeros((16, 16, 3), np.uint8) + 100
    with pytest.raises(ConfigurationError, match="at least one layer"):
        S.invert(tiny, photo, [], size=(16, 16))
    with pytest.raises(onnxlens.OnnxLensError, match="did you mean"):
        S.invert(tiny, photo, ["conv_0ut"], size=(16, 16), steps=1, progress=False)


LAYERS = {
    "early": "/_blocks.1/_swish_1/Clip_output_0",
    "middle": "/_blocks.7/Add_output_0",
    "last spatial": "/_swish_1/Clip_output_0",
}


@pytest.mark.slow
def test_inversion_by_depth_on_lite0(efficientnet_path, photos) -> None:
    model = onnxlens.Model(efficientnet_path, device="cpu", threads=2)
    size = (96, 96)
    res = S.invert(
        model, photos[0], list(LAYERS.values()), size=size, steps=200, lr=0.1, progress=False
    )
    target = unit_images(model, photos[0], size)
    errs = [
        _feature_error(model, res.images_float[i : i + 1], target, layer)[0]
        for i, layer in enumerate(LAYERS.values())
    ]
    print("\ninversion by depth (EfficientNet-Lite0, chelsea, 96x96, 200 steps)")
    for (name, layer), e, p in zip(LAYERS.items(), errs, res.metrics["psnr"], strict=True):
        print(f"  {name:13s} {layer:36s} feature error {e:.4f}  PSNR {p:.2f} dB")
    assert errs[0] <= 0.05
    assert errs[2] < 0.2
    assert res.metrics["psnr"][0] > res.metrics["psnr"][2]  # deeper layers keep less of the pixels


@pytest.mark.parametrize("alpha", [6.0, 2.0, 1.0, 2.5])
def test_fused_priors_equal_the_regularizers(alpha) -> None:
    from onnxlens.synthesis.invert import priors
    from onnxlens.synthesis.regularizers import Lp, TotalVariation

    img = np.random.default_rng(1).random((3, 3, 11, 13)).astype(np.float32)
    img[0, 0, 0, 0] = 0.5  # |x - 0.5| = 0: the sign's edge case
    lp, tv = Lp(alpha), TotalVariation(2.0)
    value, grad = priors(img, alpha, 0.7, 0.3)
    np.testing.assert_allclose(value, 0.7 * lp.value(img) + 0.3 * tv.value(img), rtol=1e-5)
    ref = 0.7 * lp.grad(img) + 0.3 * tv.grad(img)
    np.testing.assert_allclose(grad, ref, rtol=1e-4, atol=1e-9 * np.abs(ref).max())
    assert grad.dtype == np.float32 and value.shape == (3,)


def test_invert_rejects_alpha_below_one(tiny) -> None:
    photo = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(ConfigurationError, match="alpha"):
        S.invert(tiny, photo, "conv_out", size=(16, 16), steps=1, alpha=0.5, progress=False)
