"""Texture synthesis and style transfer: the projected L-BFGS against scipy's L-BFGS-B, the
recorded losses against numpy recomputations, the default layers, and on EfficientNet-Lite0 with
its real weights: the style loss of a texture falls >= 100x from noise; a style transfer keeps
the content (its content loss <= 25% of the style image's own)."""

from __future__ import annotations

import numpy as np
import pytest

import onnxlens
from onnxlens import synthesis as S
from onnxlens.errors import ConfigurationError
from onnxlens.synthesis.common import (
    activations_of,
    default_content_layer,
    spread_layers,
    unit_images,
)
from onnxlens.synthesis.style import lbfgs
from synthetic import tiny_cnn


@pytest.fixture(scope="module")
def tiny():
    return onnxlens.Model(tiny_cnn(size=16), device="cpu")


def test_lbfgs_matches_scipy_on_a_box_constrained_quadratic() -> None:
    scipy_opt = pytest.importorskip("scipy.optimize")
    rng = np.random.default_rng(0)
    a = rng.standard_normal((40, 30))
    q = a.T @ a + 0.1 * np.eye(30)
    c = rng.uniform(-0.5, 1.5, 30)  # the unconstrained minimum lies partly outside [0, 1]

    def fg(x):
        d = x.astype(np.float64).ravel() - c
        return 0.5 * float(d @ q @ d), (q @ d).reshape(x.shape).astype(np.float32)

    ours = lbfgs(fg, np.full((1, 30), 0.5, np.float32), 300)
    ref = scipy_opt.minimize(
        lambda x: fg(x)[0], np.full(30, 0.5), jac=lambda x: fg(x)[1].astype(np.float64),
        method="L-BFGS-B", bounds=[(0, 1)] * 30, options={"ftol": 1e-15, "gtol": 1e-12},
    )  # fmt: skip
    assert ours.min() >= 0 and ours.max() <= 1
    np.testing.assert_allclose(fg(ours)[0], ref.fun, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(ours.ravel(), ref.x, atol=2e-3)


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_texture_lowers_the_style_loss(tiny, optimizer) -> None:
    rng = np.random.default_rng(1)
    tex = (rng.random((16, 16, 3)) * 255).astype(np.uint8)
    tex[::2] = 30  # stripes: a texture noise does not have
    res = S.texture(
        tiny, tex, size=(24, 20), texture_size=(16, 16), layers=["conv_out", "relu_out"],
        steps=60, optimizer=optimizer, lr=0.05, record_every=5, progress=False,
    )  # fmt: skip
    assert res.images.shape == (1, 24, 20, 3)
    # the final style loss recomputed in numpy from the activations of both images
    g_t = {la: S.gram_matrix(a) for la, a in activations_of(tiny, unit_images(tiny, tex, (16, 16)), ["conv_out", "relu_out"]).items()}  # fmt: skip
    g_x = {la: S.gram_matrix(a) for la, a in activations_of(tiny, res.images_float, ["conv_out", "relu_out"]).items()}  # fmt: skip
    ref = sum(0.5 * ((g_x[la] - g_t[la]) ** 2).mean() / (g_t[la] ** 2).mean() for la in g_t)
    np.testing.assert_allclose(res.metrics["style"][0], ref, rtol=1e-3)
    assert res.metrics["style"][0] < 0.2 * res.metrics["style_start"][0]
    assert res.history["loss"].shape == (60, 1)


def test_style_transfer_records_both_losses(tiny) -> None:
    rng = np.random.default_rng(2)
    content = (rng.random((16, 16, 3)) * 255).astype(np.uint8)
    style = np.zeros((16, 16, 3), np.uint8)
    style[:, ::3] = 220
    res = S.style_transfer(
        tiny, content, style, size=(16, 16), content_layer="conv_out", style_layers=["relu_out"],
        steps=30, record_every=10, progress=False,
    )  # fmt: skip
    c = unit_images(tiny, content, (16, 16))
    phi0 = activations_of(tiny, c, ["conv_out"])["conv_out"].astype(np.float64)
    phi = activations_of(tiny, res.images_float, ["conv_out"])["conv_out"].astype(np.float64)
    np.testing.assert_allclose(
        res.metrics["content"][0], ((phi - phi0) ** 2).mean() / (phi0**2).mean(), rtol=1e-3
    )
    assert res.history["content"][0, 0] == 0  # starts from the content image
    assert res.history["style"][-1, 0] < res.history["style"][0, 0]
    assert list(res.history["step"][:, 0]) == [0, 10, 20]


def test_style_errors(tiny) -> None:
    img = np.zeros((16, 16, 3), np.uint8)
    with pytest.raises(ConfigurationError, match="optimizer"):
        S.texture(
            tiny, img, size=(16, 16), layers=["conv_out"], steps=2, optimizer="sgd", progress=False
        )
    with pytest.raises(ConfigurationError, match="init"):
        S.style_transfer(tiny, img, img, size=(16, 16), init="white", progress=False)
    with pytest.raises(ConfigurationError, match="one weight per layer"):
        S.texture(tiny, img + 1, size=(16, 16), layers=["conv_out"], weights=[1, 2], progress=False)


@pytest.mark.slow
def test_texture_and_style_on_lite0(efficientnet_path, photos) -> None:
    model = onnxlens.Model(efficientnet_path, device="cpu", threads=2)
    layers = spread_layers(model)
    assert len(layers) == 5 and len(set(layers)) == 5  # one per spatial stage, shallow to deep
    assert layers[0] == "/_swish/Clip_output_0"
    assert default_content_layer(model) in [la.name for la in model.layers]

    tex = S.texture(model, photos[1], size=(128, 128), steps=300, record_every=50, progress=False)
    drop = tex.metrics["style_start"][0] / tex.metrics["style"][0]
    print(f"\ntexture (coffee, 128x128, L-BFGS 300): style loss {tex.metrics['style_start'][0]:.4f} "
          f"-> {tex.metrics['style'][0]:.5f} ({drop:.0f}x); curve {tex.history['style'][:, 0].round(4).tolist()}")  # fmt: skip
    assert drop >= 100

    st = S.style_transfer(model, photos[0], photos[1], size=(96, 96), steps=80, record_every=20, progress=False)  # fmt: skip
    ratio = st.metrics["content"][0] / st.metrics["content_of_style"][0]
    print(f"style transfer (chelsea in coffee's style, 96x96, L-BFGS 80): content {st.metrics['content'][0]:.4f} "
          f"vs the style image's {st.metrics['content_of_style'][0]:.4f} ({ratio:.0%}); "
          f"style curve {st.history['style'][:, 0].round(4).tolist()}, content curve {st.history['content'][:, 0].round(4).tolist()}")  # fmt: skip
    assert ratio <= 0.25
    assert st.history["style"][-1, 0] < 0.3 * st.history["style"][0, 0]  # and takes the style


def test_recorded_terms_match_the_numpy_terms(tiny) -> None:
    """The curves come from one forward ORT run with the losses in the graph; the final metrics
    from float64 numpy: both give the same terms."""
    from onnxlens.synthesis.style import _style_targets, _Terms

    rng = np.random.default_rng(3)
    simg = rng.random((1, 3, 16, 16)).astype(np.float32)
    cimg = rng.random((1, 3, 16, 16)).astype(np.float32)
    layers = ["conv_out", "relu_out"]
    grams, rel = _style_targets(tiny, simg, layers, None)
    phi0 = activations_of(tiny, cimg, ["conv_out"])["conv_out"][0].astype(np.float64)
    terms = _Terms(layers, grams, rel, "conv_out", phi0)
    x = rng.random((1, 3, 16, 16)).astype(np.float32)
    got, ref = terms(tiny, x), terms.exact(tiny, x)
    assert set(got) == {"style", "content"}
    for k in got:
        np.testing.assert_allclose(got[k], ref[k], rtol=1e-4)
    assert terms(tiny, cimg)["content"] == 0  # the content image against its own features
