"""Gradient and perturbation methods against captum on the same weights (small VGG-like net with
one nn.ReLU module per use, which captum's guided backprop / deconvnet hooks need)."""

from __future__ import annotations

import nets
import numpy as np
import pytest
import torch

import onnxlens

captum_attr = pytest.importorskip("captum.attr", reason="pip install captum")

TARGET = [3, 7]


def close(ours: np.ndarray, ref: np.ndarray, rtol: float = 2e-3) -> None:
    scale = float(np.abs(ref).max())
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=rtol * scale, rtol=0)
    assert nets.corr(ours, ref) >= 0.999


@pytest.mark.parametrize(
    ("ours", "ref", "kwargs"),
    [
        (lambda m: onnxlens.Saliency(m), lambda n: captum_attr.Saliency(n), {}),
        (
            lambda m: onnxlens.Saliency(m, abs=False),
            lambda n: captum_attr.Saliency(n),
            {"abs": False},
        ),
        (lambda m: onnxlens.InputXGradient(m), lambda n: captum_attr.InputXGradient(n), {}),
        (lambda m: onnxlens.GuidedBackprop(m), lambda n: captum_attr.GuidedBackprop(n), {}),
        (lambda m: onnxlens.Deconvolution(m), lambda n: captum_attr.Deconvolution(n), {}),
    ],
    ids=["saliency", "saliency-signed", "ixg", "guided", "deconvnet"],
)
def test_gradient_methods_match_captum(vgg, ours, ref, kwargs) -> None:
    net, model, x = vgg
    exp = ours(model).attribute(x, target=TARGET)
    theirs = ref(net).attribute(torch.from_numpy(x), target=TARGET, **kwargs).detach().numpy()
    close(exp.raw, theirs)
    assert exp.heatmap.shape == (2, 64, 64) and 0 <= exp.heatmap.min() and exp.heatmap.max() == 1


@pytest.mark.parametrize("method", ["riemann_trapezoid", "gausslegendre", "riemann_left"])
def test_integrated_gradients_match_captum(vgg, method: str) -> None:
    net, model, x = vgg
    exp = onnxlens.IntegratedGradients(model, steps=24, method=method, progress=False).attribute(
        x, target=TARGET
    )
    theirs = captum_attr.IntegratedGradients(net).attribute(
        torch.from_numpy(x), target=TARGET, n_steps=24, method=method
    )
    ref = theirs.detach().numpy()
    if method == "riemann_trapezoid":
        # captum's trapezoid uses step 1/n at n points on [0, 1] (weights sum to (n-1)/n); ours
        # uses the exact rule, step 1/(n-1). Same points, so the two differ by that factor only.
        ref = ref * 24 / 23
    close(exp.raw, ref)


@pytest.mark.parametrize(("window", "stride"), [(8, 4), (5, 3)])
def test_occlusion_matches_captum(vgg, window: int, stride: int) -> None:
    net, model, x = vgg
    exp = onnxlens.Occlusion(model, window=window, stride=stride, progress=False).attribute(
        x, target=TARGET
    )
    theirs = captum_attr.Occlusion(net).attribute(
        torch.from_numpy(x),
        sliding_window_shapes=(3, window, window),
        strides=(3, stride, stride),
        target=TARGET,
        baselines=0,
        perturbations_per_eval=32,
    )
    theirs = theirs.detach().numpy()
    np.testing.assert_allclose(
        theirs[:, 0], theirs[:, 2], atol=1e-6
    )  # the window spans all channels
    close(exp.raw, theirs[:, 0], rtol=1e-3)


@pytest.mark.parametrize("fixture", ["vgg", "resnet18"])
def test_integrated_gradients_completeness(request, fixture: str) -> None:
    """Sum of attributions = f(x) - f(baseline) within 5% at 64 steps (Sundararajan et al. Prop. 1)."""
    _, model, x = request.getfixturevalue(fixture)
    exp = onnxlens.IntegratedGradients(
        model, steps=64, method="riemann_trapezoid", progress=False
    ).attribute(x)
    f_x = exp.target_scores
    gap = f_x - exp.extras["baseline_scores"]
    total = exp.raw.reshape(len(x), -1).sum(1)
    np.testing.assert_allclose(total, gap, rtol=0.05)
    np.testing.assert_allclose(exp.extras["delta"], total - gap, rtol=1e-4, atol=1e-4)


def test_smoothgrad_is_the_mean_of_noisy_gradients(vgg) -> None:
    _, model, x = vgg
    sg = onnxlens.SmoothGrad(
        model, samples=6, noise_level=0.1, magnitude=False, seed=3, progress=False
    ).attribute(x, target=TARGET)
    rng = np.random.default_rng(3)
    span = (x.reshape(2, -1).max(1) - x.reshape(2, -1).min(1)).reshape(2, 1, 1, 1)
    noise = rng.standard_normal((6, *x.shape)).astype(np.float32)
    grads = [
        model.gradient((x + 0.1 * span * noise[k]).astype(np.float32), TARGET) for k in range(6)
    ]
    np.testing.assert_allclose(
        sg.raw, np.mean(grads, axis=0), atol=1e-5 * float(np.abs(sg.raw).max())
    )
    # Noise averages out where the plain gradient is noisy: smoother than one gradient.
    plain = model.gradient(x, TARGET)
    assert np.abs(np.diff(sg.raw, axis=-1)).mean() < np.abs(np.diff(plain, axis=-1)).mean()


def test_guided_gradcam_is_guided_backprop_times_gradcam(vgg) -> None:
    _, model, x = vgg
    ggc = onnxlens.GuidedGradCAM(model).attribute(x, target=TARGET)
    gb = onnxlens.GuidedBackprop(model).attribute(x, target=TARGET).raw
    gc = onnxlens.GradCAM(model).attribute(x, target=TARGET).heatmap
    np.testing.assert_allclose(ggc.raw, gb * gc[:, None], rtol=1e-5, atol=1e-7)
    assert ggc.layers == ["/features/features.11/Relu_output_0"]
