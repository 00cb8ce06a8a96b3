"""Yosinski's projections (decay, blur, pixel clipping) against numpy/scipy, and the redirected
ReLU start of visualize(): a channel dead on the starting image still gets optimised."""

from __future__ import annotations

import numpy as np
import pytest

import onnxlens
from onnxlens import synthesis as S
from onnxlens.errors import ConfigurationError
from onnxlens.methods.explanation import softmax
from onnxlens.synthesis import regularizers as R
from synthetic import tiny_cnn


@pytest.fixture(scope="module")
def tiny():
    return onnxlens.Model(tiny_cnn(size=16), device="cpu")


def test_blur_matches_scipy_gaussian_filter() -> None:
    ndimage = pytest.importorskip("scipy.ndimage", reason="scipy is not installed")
    rng = np.random.default_rng(0)
    img = rng.random((2, 3, 20, 17)).astype(np.float32)
    ref = np.stack(
        [[ndimage.gaussian_filter(p.astype(np.float64), 1.3, mode="mirror", truncate=4.0)
          for p in im] for im in img]
    )  # fmt: skip
    blur = R.blur(1.3, every=3)
    out = img.copy()
    for step in (0, 1):  # not yet: steps 0 and 1 leave the image alone
        blur.apply(out, np.zeros_like(out), step)
    np.testing.assert_array_equal(out, img)
    blur.apply(out, np.zeros_like(out), 2)
    # cv2's float kernel has the same radius (4 sigma) and the same mirror border
    np.testing.assert_allclose(out, ref, atol=2e-5)


@pytest.mark.parametrize("kind", ["norm", "contribution"])
def test_clipping_greys_the_least_pixels(kind) -> None:
    rng = np.random.default_rng(1)
    img = rng.random((2, 3, 10, 12)).astype(np.float32)
    grad = rng.standard_normal(img.shape).astype(np.float32)
    d = img.astype(np.float64) - 0.5
    score = np.sqrt((d**2).sum(1)) if kind == "norm" else np.abs((d * grad).sum(1))
    proj = R.clip_norm(30) if kind == "norm" else R.clip_contribution(30)
    out = img.copy()
    proj.apply(out, grad, 0)
    for i in range(2):
        order = np.argsort(score[i].ravel())
        k = int(np.ceil(0.3 * order.size - 1e-9))  # below the 30th percentile: ~30% of pixels
        grey = np.zeros(order.size, bool)
        grey[order[: k - 1]] = True  # the k-1 smallest are strictly below it in any convention
        flat = out[i].reshape(3, -1)
        assert (flat[:, grey] == 0.5).all()
        kept = np.zeros(order.size, bool)
        kept[order[k + 1 :]] = True  # everything clearly above it is untouched
        np.testing.assert_array_equal(flat[:, kept], img[i].reshape(3, -1)[:, kept])


def test_decay_pulls_towards_grey() -> None:
    img = np.array([[[[0.0, 1.0, 0.5]]]], np.float32)
    R.decay(0.1).apply(img, np.zeros_like(img), 0)
    np.testing.assert_allclose(img, [[[[0.05, 0.95, 0.5]]]], atol=1e-7)


def test_projection_errors(tiny) -> None:
    with pytest.raises(ConfigurationError, match="param='pixel'"):
        S.visualize(tiny, "relu_out:1", steps=2, regularizers=[R.blur(1.0)], progress=False)
    with pytest.raises(ConfigurationError, match="percentile"):
        R.clip_norm(100)
    with pytest.raises(ConfigurationError, match="priors"):
        S.visualize(tiny, "relu_out:1", steps=2, regularizers=[object()], progress=False)


def test_projections_run_in_the_loop(tiny) -> None:
    """Raw pixels with Yosinski's projections still raise the objective, and the clip leaves its
    share of exactly grey pixels in the result."""
    regs = [R.decay(0.01), R.blur(0.5, every=4), R.clip_norm(20)]
    res = S.visualize(
        tiny, "relu_out:1", steps=40, param="pixel", lr=0.02, regularizers=regs, progress=False
    )
    assert res.trajectory[-5:].mean() > 1.2 * res.trajectory[:5].mean()
    grey = np.all(res.images_float[0] == 0.5, axis=-1).mean()
    assert grey >= 0.19, grey


def test_redirected_start_revives_a_dead_channel(tiny) -> None:
    """Channel 0 of the tiny CNN is dead (its ReLU off) on the starting image: with the true
    gradient it never moves; with redirected ReLU gradients for the first steps it comes alive
    and the true gradient takes over."""
    dead = S.visualize(tiny, "relu_out:0", steps=40, redirect_steps=0, progress=False)
    assert np.abs(dead.trajectory).max() == 0 and dead.final[0] == 0
    alive = S.visualize(tiny, "relu_out:0", steps=40, redirect_steps=16, progress=False)
    assert alive.final[0] > 0.1
    assert alive.trajectory[-1, 0] > alive.trajectory[16, 0]  # still rising after the switch
    assert alive.settings["redirect_steps"] == 16


@pytest.mark.slow
def test_yosinski_regularised_classes_are_recognised(efficientnet_path) -> None:
    """EfficientNet-Lite0 with its real weights: raw-pixel class visualisations under decay,
    blur and both clips (Yosinski et al. 2015's regime) are the model's top-1 for their class."""
    model = onnxlens.Model(efficientnet_path, device="cpu")
    classes = [1, 409]  # goldfish, analog clock
    regs = [R.decay(0.001), R.blur(0.5, every=4), R.clip_norm(10), R.clip_contribution(10)]
    res = S.visualize(
        model, [S.class_logit(k) for k in classes], steps=48, param="pixel", lr=0.02,
        regularizers=regs, progress=False,
    )  # fmt: skip
    probs = softmax(model.predict(res.images))
    assert (probs.argmax(1) == classes).all(), probs.argmax(1)
    assert (probs[np.arange(2), classes] >= 0.9).all()
