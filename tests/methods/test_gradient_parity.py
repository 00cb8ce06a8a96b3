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


def minmax(maps: np.ndarray) -> np.ndarray:
    """Each (H, W) map scaled to [0, 1] on its own, constant maps to zeros (a numpy reference of
    the heat maps)."""
    m = maps.astype(np.float64)
    lo = m.min(axis=(1, 2), keepdims=True)
    span = m.max(axis=(1, 2), keepdims=True) - lo
    return np.where(span > 0, (m - lo) / np.where(span > 0, span, 1), 0.0)


def same_heat(heat: np.ndarray, captum_attr_nchw: np.ndarray, reduce: str = "sum") -> None:
    """The heat map against captum's attributions reduced over channels in numpy: |a| summed
    (max for saliency, as Simonyan et al.), min-max scaled per map."""
    a = np.abs(captum_attr_nchw)
    ref = minmax(a.max(axis=1) if reduce == "max" else a.sum(axis=1))
    assert heat.shape == ref.shape and heat.dtype == np.float32
    np.testing.assert_allclose(heat, ref, rtol=0, atol=5e-3)


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
    same_heat(exp.heatmap, theirs, "max" if exp.method == "saliency" else "sum")


@pytest.mark.parametrize("method", ["riemann_trapezoid", "gausslegendre", "riemann_left"])
def test_integrated_gradients_match_captum(vgg, method: str) -> None:
    net, model, x = vgg
    exp = onnxlens.IntegratedGradients(model, progress=False).attribute(
        x, target=TARGET, n_steps=24, method=method
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
    same_heat(exp.heatmap, ref)


def test_integrated_gradients_baselines_array_matches_captum(vgg) -> None:
    """A per-pixel baseline (a blurred copy of each input), as captum's `baselines` tensor."""
    import cv2

    net, model, x = vgg
    base = np.stack([np.stack([cv2.GaussianBlur(c, (0, 0), 4) for c in img]) for img in x]).astype(
        np.float32
    )
    exp = onnxlens.IntegratedGradients(model, progress=False).attribute(
        x, target=TARGET, baselines=base, n_steps=16
    )
    theirs = captum_attr.IntegratedGradients(net).attribute(
        torch.from_numpy(x), baselines=torch.from_numpy(base), target=TARGET, n_steps=16
    )
    close(exp.raw, theirs.detach().numpy())
    with torch.no_grad():
        f_base = net(torch.from_numpy(base)).numpy()[np.arange(2), TARGET]
    np.testing.assert_allclose(exp.extras["baseline_scores"], f_base, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("window", "stride", "baselines"), [(8, 4, 0.0), (5, 3, 0.0), (8, 4, "array")]
)
def test_occlusion_matches_captum(vgg, window: int, stride: int, baselines) -> None:
    net, model, x = vgg
    if baselines == "array":  # a per-sample, per-channel fill value, broadcast over space
        baselines = np.random.default_rng(0).uniform(-1, 1, (2, 3, 1, 1)).astype(np.float32)
        theirs_base = torch.from_numpy(np.broadcast_to(baselines, x.shape).copy())
    else:
        theirs_base = baselines
    exp = onnxlens.Occlusion(model, progress=False).attribute(
        x, target=TARGET, sliding_window_shapes=window, strides=stride, baselines=baselines
    )
    theirs = captum_attr.Occlusion(net).attribute(
        torch.from_numpy(x),
        sliding_window_shapes=(3, window, window),
        strides=(3, stride, stride),
        target=TARGET,
        baselines=theirs_base,
        perturbations_per_eval=32,
    )
    theirs = theirs.detach().numpy()
    np.testing.assert_allclose(
        theirs[:, 0], theirs[:, 2], atol=1e-6
    )  # the window spans all channels
    close(exp.raw, theirs[:, 0], rtol=1e-3)
    ref = np.maximum(theirs[:, 0], 0)  # heat map: the positive drops, min-max scaled per map
    np.testing.assert_allclose(exp.heatmap, minmax(ref), rtol=0, atol=2e-3)


@pytest.mark.parametrize("fixture", ["vgg", "resnet18"])
def test_integrated_gradients_completeness(request, fixture: str) -> None:
    """Sum of attributions = f(x) - f(baseline) within 5% at 64 steps (Sundararajan et al. Prop. 1)."""
    _, model, x = request.getfixturevalue(fixture)
    exp = onnxlens.IntegratedGradients(model, progress=False).attribute(
        x, n_steps=64, method="riemann_trapezoid"
    )
    f_x = exp.target_scores
    gap = f_x - exp.extras["baseline_scores"]
    total = exp.raw.reshape(len(x), -1).sum(1)
    np.testing.assert_allclose(total, gap, rtol=0.05)
    np.testing.assert_allclose(exp.extras["delta"], total - gap, rtol=1e-4, atol=1e-4)


def _torch_input_gradient(net, x: np.ndarray, target: list[int]) -> np.ndarray:
    xt = torch.from_numpy(np.ascontiguousarray(x)).requires_grad_(True)
    net(xt)[torch.arange(len(target)), torch.tensor(target)].sum().backward()
    return xt.grad.numpy()


@pytest.mark.parametrize("noise", ["noise_level", "stdevs"])
def test_smoothgrad_is_the_mean_of_noisy_gradients(vgg, noise: str) -> None:
    """Against torch autograd on the same noisy inputs: `noise_level` is relative to each input's
    range, `stdevs` an absolute std (captum's NoiseTunnel meaning)."""
    net, model, x = vgg
    kw = {"noise_level": 0.1} if noise == "noise_level" else {"stdevs": 0.3}
    sg = onnxlens.SmoothGrad(model, magnitude=False, seed=3, progress=False).attribute(
        x, target=TARGET, nt_samples=6, **kw
    )
    rng = np.random.default_rng(3)
    span = (x.reshape(2, -1).max(1) - x.reshape(2, -1).min(1)).reshape(2, 1, 1, 1)
    sigma = 0.1 * span if noise == "noise_level" else np.float32(0.3)
    noise_draws = rng.standard_normal((6, *x.shape)).astype(np.float32)
    grads = [
        _torch_input_gradient(net, (x + sigma * noise_draws[k]).astype(np.float32), TARGET)
        for k in range(6)
    ]
    np.testing.assert_allclose(
        sg.raw, np.mean(grads, axis=0), rtol=0, atol=2e-3 * float(np.abs(sg.raw).max())
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
