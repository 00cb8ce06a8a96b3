"""visualize(): the optimisation raises its objectives, on small models and on EfficientNet-Lite0
with its real ImageNet weights (class visualisations the network recognises, natural spectra)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

import onnxlens
from onnxlens import synthesis as S
from onnxlens.errors import ConfigurationError
from onnxlens.methods.explanation import softmax
from synthetic import tiny_cnn


@pytest.fixture(scope="module")
def tiny():
    return onnxlens.Model(tiny_cnn(size=16), device="cpu")


def _random_start_value(model, objective, size, seed=0):
    f = S.ObjectiveFunction(model, objective, 1, size)
    x = np.random.default_rng(seed).random((1, 3, *size)).astype(np.float32)
    from onnxlens.synthesis.space import ModelSpace

    return float(f.values(ModelSpace(model.preprocess.with_overrides(size=size)).to_model(x))[0])


@pytest.mark.parametrize("param", ["fft", "pixel", "maco"])
def test_visualize_raises_each_objective(tiny, param) -> None:
    objs = [S.channel("relu_out", c) for c in (1, 2, 3)]  # channel 0 is dead (ReLU at 0)
    photos = [np.random.default_rng(1).integers(0, 255, (32, 32, 3), dtype=np.uint8)]
    res = S.visualize(tiny, objs, steps=60, param=param, magnitude_images=photos, progress=False)
    assert res.images.shape == (3, 16, 16, 3) and res.images.dtype == np.uint8
    assert res.images_float.shape == (3, 16, 16, 3)
    assert 0 <= res.images_float.min() and res.images_float.max() <= 1
    assert res.trajectory.shape == (60, 3)
    # the final images beat their own start, and (free to raise their contrast, unlike MACO's
    # fixed spectrum) a uniformly random image
    gain = 1.05 if param == "maco" else 1.2
    assert (res.trajectory[-5:].mean(0) > gain * res.trajectory[:5].mean(0)).all()
    if param != "maco":
        for i, o in enumerate(objs):
            assert res.final[i] > _random_start_value(tiny, o, (16, 16))


def test_visualize_is_reproducible_and_keeps_snapshots(tiny) -> None:
    a = S.visualize(tiny, "relu_out:1", steps=20, seed=3, snapshots=[0, 10, 20], progress=False)
    b = S.visualize(tiny, "relu_out:1", steps=20, seed=3, progress=False)
    np.testing.assert_array_equal(a.images, b.images)
    assert sorted(a.snapshots) == [0, 10, 20]
    np.testing.assert_array_equal(a.snapshots[20], a.images)
    c = S.visualize(tiny, "relu_out:1", steps=20, seed=4, progress=False)
    assert not np.array_equal(a.images, c.images)


def test_batches_split_and_rows_keep_their_targets(tiny) -> None:
    objs = [S.channel("relu_out", c) for c in (1, 2, 3)]
    whole = S.visualize(tiny, objs, steps=15, batch_size=3, transforms=None, progress=False)
    split = S.visualize(tiny, objs, steps=15, batch_size=2, transforms=None, progress=False)
    assert split.trajectory.shape == (15, 3)
    # row 1 of a batch optimises objective 1 only, whatever the batch layout
    for res in (whole, split):
        vals = np.array([[_value(tiny, o, res.images[i]) for o in objs] for i in range(3)])
        assert (vals.argmax(0) == [0, 1, 2]).all()


def _value(model, objective, uint8):
    f = S.ObjectiveFunction(model, objective, 1, uint8.shape[:2])
    x, _ = model.prepare([uint8])
    return float(f.values(x)[0])


def test_grey_and_nhwc_models() -> None:
    from onnx import helper

    proto = tiny_cnn(size=12, layout="NHWC")
    nhwc = onnxlens.Model(proto, device="cpu")
    res = S.visualize(nhwc, "relu_out:2", steps=20, progress=False)
    assert res.images.shape == (1, 12, 12, 3)
    grey = tiny_cnn(size=12)
    w = next(t for t in grey.graph.initializer if t.name == "conv.w")
    arr = onnx.numpy_helper.to_array(w)[:, :1]
    w.CopyFrom(onnx.numpy_helper.from_array(arr, "conv.w"))
    grey.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 1
    del grey.graph.value_info[:]
    m = onnxlens.Model(grey, device="cpu")
    res = S.visualize(m, "relu_out:0", steps=20, progress=False)
    assert res.images.shape == (1, 12, 12, 3)
    assert (res.images[..., 0] == res.images[..., 1]).all()  # grey shown as grey
    del helper


def test_batch_follows_the_memory_bound() -> None:
    """One image's VJP step holds every float tensor of the forward pass twice (kept and its
    cotangent): for the tiny CNN at 16x16, conv and relu 4x16x16, pool 4x8x8, gap and flatten 4,
    logits 5 floats. A memory limit of 2.5 images' worth gives batches of 2."""
    per_image = 2 * 4 * (2 * 4 * 16 * 16 + 4 * 8 * 8 + 4 + 4 + 5)
    model = onnxlens.Model(tiny_cnn(size=16), device="cpu", memory_limit=int(2.5 * per_image))
    assert S.compiled.vjp_bytes_per_image(model, (16, 16)) == per_image
    objs = [S.channel("relu_out", c) for c in (1, 2, 3)]
    res = S.visualize(model, objs, steps=3, transforms=None, progress=False)
    assert res.settings["batch_size"] == 2 and len(res) == 3


def test_errors(tiny) -> None:
    with pytest.raises(ConfigurationError, match="takes 16x16"):
        S.visualize(tiny, "relu_out:0", size=(20, 20), steps=2, progress=False)
    with pytest.raises(ConfigurationError, match="magnitude_images"):
        S.visualize(tiny, "relu_out:0", param="maco", steps=2, progress=False)
    with pytest.raises(ConfigurationError, match="parameterisation"):
        S.visualize(tiny, "relu_out:0", param="wavelet", steps=2, progress=False)
    with pytest.raises(ConfigurationError, match="no objectives"):
        S.visualize(tiny, [], steps=2, progress=False)


# -- real weights ---------------------------------------------------------------------------------

CLASSES = [1, 9, 130, 207, 281, 340, 409, 417, 949, 980]  # goldfish ... volcano


def _radial_slope(img: np.ndarray) -> float:
    """Least-squares slope of log power against log frequency, radially averaged (grey)."""
    g = img.astype(np.float64).mean(2)
    g -= g.mean()
    p = np.abs(np.fft.fftshift(np.fft.fft2(g))) ** 2
    h, w = g.shape
    yy, xx = np.indices(p.shape)
    r = np.hypot(yy - h // 2, xx - w // 2).astype(int)
    radial = np.bincount(r.ravel(), p.ravel()) / np.maximum(np.bincount(r.ravel()), 1)
    k = np.arange(2, min(h, w) // 2)
    return float(np.polyfit(np.log(k), np.log(radial[k]), 1)[0])


@pytest.fixture(scope="module")
def lite0_classes(efficientnet_path):
    model = onnxlens.Model(efficientnet_path, device="cpu")
    res = S.visualize(model, [S.class_logit(k) for k in CLASSES], steps=256, progress=False)
    return model, res


@pytest.mark.slow
def test_class_visualisations_are_recognised(lite0_classes) -> None:
    """Each rendered image is the model's top-1 for its class with probability >= 0.9 without
    transforms, and stays top-1 under a random 8-pixel shift."""
    model, res = lite0_classes
    probs = softmax(model.predict(res.images))
    top = probs.argmax(1)
    assert (top == CLASSES).all(), top
    assert (probs[np.arange(len(CLASSES)), CLASSES] >= 0.9).all()
    rng = np.random.default_rng(0)
    shifted = np.stack(
        [np.roll(im, tuple(rng.integers(-8, 9, 2)), axis=(0, 1)) for im in res.images]
    )
    assert (softmax(model.predict(shifted)).argmax(1) == CLASSES).all()


@pytest.mark.slow
def test_fft_visualisations_have_a_natural_spectrum(lite0_classes) -> None:
    """Natural images fall off as 1/f^2 in power (slope about -2 in log-log); FFT + decorrelated
    visualisations stay within [-3, -1]."""
    _, res = lite0_classes
    slopes = [_radial_slope(im) for im in res.images]
    assert all(-3 <= s <= -1 for s in slopes), slopes
