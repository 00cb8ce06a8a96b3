"""Gradient and perturbation methods against captum on the same weights (small VGG-like net with
one nn.ReLU module per use, which captum's guided backprop / deconvnet hooks need).

Gradients of a ReLU/MaxPool network are piecewise constant in the input: where a pre-activation
is within rounding of zero, or two inputs of a pooling window within rounding of a tie, two
correct implementations (ONNX Runtime and torch, or one library on two CPUs) may take different
branches, and their gradients differ there by a finite amount (13 of 24,576 elements by up to
23% on one machine). So the comparison is argued from the kinks, not from one machine's rounding:

- The references are computed in float64 (on a float64 copy of the net, the same weights
  exactly), so they carry no float32 rounding of their own; captum in float64 is checked to
  agree with them (to 1e-9; 1e-6 for integrated gradients, whose path captum spaces in float32).
- Every point a method takes a gradient at (the input; each point of the integrated-gradients
  path; each noisy copy of SmoothGrad) is also perturbed by +-KINK_DELTA * std(x) along seeded
  random directions (an integrated-gradients point in proportion to its distance from the
  baseline, whose rounding errors are that much smaller). float32 rounding moves a pre-activation by at most ~n * 6e-8 of the sum of
  its terms' magnitudes (n <= 432 terms here: < 3e-5); KINK_DELTA = 1e-4 is beyond that, so
  a unit either implementation could flip is flipped by one of the +- perturbations of some
  direction, and the gradient a float32 implementation takes at that point is within the range
  the float64 gradient spans over them. Perturbing each point on its own matters: the first
  point of a left or trapezoid rule is the baseline itself (all zeros: constant feature maps,
  every pooling window an exact tie), which no perturbation of x moves; there the range is the
  whole subdifferential, as any tie-break is a correct gradient.
- The method's result is combined from those per-point ranges by interval arithmetic (exact
  for sums and products with fixed factors), and every element of ours must lie within it,
  widened by the usual tolerance (rtol * max |ref|). Where the range is below half that
  tolerance (the function is smooth there) this is the plain tolerance check, and there ours
  must also correlate with the reference; a 1% error, or one wrong element, fails the check
  (`test_the_check_rejects_small_errors`).
"""

from __future__ import annotations

import copy

import nets
import numpy as np
import pytest
import torch

import onnxlens

captum_attr = pytest.importorskip("captum.attr", reason="pip install captum")

TARGET = [3, 7]
KINK_DELTA = 1e-4  # perturbation of each gradient point, relative to std(x) (see the module doc)
KINK_DIRECTIONS = 2  # seeded random directions, each tried with + and -
# The net is kinky at this scale (a flip moves many gradient elements, and a path through the
# all-zero baseline starts at a tie everywhere): the check fails if more than this fraction of
# the elements has a range over the tolerance, where it would have lost its teeth.
MAX_KINKS = 0.6


def double(net: torch.nn.Module) -> torch.nn.Module:
    """A float64 copy of `net`: the same (float32) weights, exactly, computed without float32
    rounding."""
    return copy.deepcopy(net).double().eval()


class Range:
    """Elementwise interval [lo, hi] around the value `mid`, with the interval arithmetic the
    methods need: sums, products with fixed arrays, abs."""

    def __init__(self, mid: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> None:
        self.mid, self.lo, self.hi = mid, lo, hi

    def __mul__(self, c: np.ndarray | float) -> Range:
        a, b = self.lo * c, self.hi * c
        return Range(self.mid * c, np.minimum(a, b), np.maximum(a, b))

    def __add__(self, o: Range) -> Range:
        return Range(self.mid + o.mid, self.lo + o.lo, self.hi + o.hi)

    def abs(self) -> Range:
        lo = np.where((self.lo <= 0) & (self.hi >= 0), 0.0, np.minimum(abs(self.lo), abs(self.hi)))
        return Range(np.abs(self.mid), lo, np.maximum(abs(self.lo), abs(self.hi)))


def _input_gradients(net64: torch.nn.Module, points: np.ndarray) -> np.ndarray:
    """d logit[TARGET] / d input at each of `points` (..., N, C, H, W), float64."""
    flat = np.ascontiguousarray(points.reshape(-1, *points.shape[-3:]))
    out = np.empty_like(flat)
    for s in range(0, len(flat), 64):  # bounded memory: 64 images per backward pass
        xt = torch.from_numpy(flat[s : s + 64]).requires_grad_(True)
        reps = len(xt) // len(TARGET)
        net64(xt)[torch.arange(len(xt)), torch.tensor(TARGET * reps)].sum().backward()
        out[s : s + 64] = xt.grad.numpy()
    return out.reshape(points.shape)


def gradient_range(net64: torch.nn.Module, points: np.ndarray, scales: np.ndarray | float) -> Range:
    """The float64 gradient at each point (P, N, C, H, W) and its range over the points'
    perturbations by +-KINK_DELTA * scales[p] (one seeded draw per point and direction)."""
    rng = np.random.default_rng(0)
    step = KINK_DELTA * np.asarray(scales, np.float64).reshape(-1, *([1] * (points.ndim - 1)))
    g = _input_gradients(net64, points)
    lo, hi = g.copy(), g.copy()
    for _ in range(KINK_DIRECTIONS):
        t = rng.standard_normal(points.shape)
        for sign in (1.0, -1.0):
            gp = _input_gradients(net64, points + sign * step * t)
            np.minimum(lo, gp, out=lo)
            np.maximum(hi, gp, out=hi)
    return Range(g, lo, hi)


def close(
    ours: np.ndarray, ref: Range, rtol: float = 2e-3, max_kinks: float = MAX_KINKS
) -> np.ndarray:
    """`ours` within `ref`'s range widened by rtol * max |ref|, as the module doc argues; returns
    the reference with our values where it is at a kink (for the heat-map checks)."""
    assert ours.shape == ref.mid.shape
    atol = rtol * float(np.abs(ref.mid).max())
    at_kink = ref.hi - ref.lo > atol / 2
    assert at_kink.mean() <= max_kinks, f"{at_kink.mean():.1%} of the elements are at kinks"
    outside = (ours < ref.lo - atol) | (ours > ref.hi + atol)
    excess = float(np.max(np.maximum(ref.lo - ours, ours - ref.hi)))
    assert not outside.any(), (
        f"{int(outside.sum())} of {ours.size} elements outside the reference's range near its "
        f"points (+-{atol:.3g}); worst excess {excess:.3g}"
    )
    assert nets.corr(ours[~at_kink], ref.mid[~at_kink]) >= 0.999
    return np.where(at_kink, ours, ref.mid)


def captum_range(cls: type, net: torch.nn.Module, x: np.ndarray, **kwargs) -> Range:
    """Range of captum's `cls` (float64 net) over x and its perturbations: for methods whose
    backward rules live in captum's hooks (guided backprop, deconvnet), a single gradient point."""
    method = cls(double(net))

    def run(x64: np.ndarray) -> np.ndarray:
        reps = len(x64) // len(TARGET)
        xt = torch.from_numpy(np.ascontiguousarray(x64))
        return method.attribute(xt, target=TARGET * reps, **kwargs).detach().numpy()

    rng = np.random.default_rng(0)
    x64 = x.astype(np.float64)
    step = KINK_DELTA * float(x64.std())
    moved = [
        x64 + sign * step * t
        for t in (rng.standard_normal(x.shape) for _ in range(KINK_DIRECTIONS))
        for sign in (1.0, -1.0)
    ]
    values = run(np.concatenate([x64, *moved])).reshape(1 + len(moved), *x.shape)
    return Range(values[0], values.min(0), values.max(0))


def integrated_gradients_range(
    net: torch.nn.Module, x: np.ndarray, baseline: np.ndarray, n_steps: int, method: str
) -> Range:
    """sum_k w_k (x - x') grad(x' + a_k (x - x')) with captum's points a_k and weights w_k, each
    point's gradient as a range; captum's own float64 result must equal the middle value."""
    from captum.attr._utils.approximation_methods import approximation_parameters

    net64 = double(net)
    steps, alphas = approximation_parameters(method)
    w, a = steps(n_steps), alphas(n_steps)
    x64, b64 = x.astype(np.float64), baseline.astype(np.float64)
    points = np.stack([b64 + ak * (x64 - b64) for ak in a])
    # Each point perturbed in proportion to its distance from the baseline (rounding errors of a
    # point near the baseline are that much smaller, and a larger kick would break the baseline's
    # many exact ties on purpose), plus a rounding-sized kick for the baseline point itself.
    span = float((x64 - b64).std())
    g = gradient_range(net64, points, np.asarray(a, np.float64) * span + 1e-3 * span)
    total: Range | None = None
    for k in range(n_steps):
        term = Range(g.mid[k], g.lo[k], g.hi[k]) * (w[k] * (x64 - b64))
        total = term if total is None else total + term
    assert total is not None
    theirs = captum_attr.IntegratedGradients(net64).attribute(
        torch.from_numpy(x64),
        baselines=torch.from_numpy(b64),
        target=TARGET,
        n_steps=n_steps,
        method=method,
    )
    # captum computes its path points in float32 (0.0416666641... for 1/24): 1e-6, not 1e-9.
    scale = float(np.abs(total.mid).max())
    np.testing.assert_allclose(theirs.detach().numpy(), total.mid, rtol=0, atol=1e-6 * scale)
    return total


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
    ("ours", "kind"),
    [
        (lambda m: onnxlens.Saliency(m), "saliency"),
        (lambda m: onnxlens.Saliency(m, abs=False), "saliency-signed"),
        (lambda m: onnxlens.InputXGradient(m), "ixg"),
        (lambda m: onnxlens.GuidedBackprop(m), "guided"),
        (lambda m: onnxlens.Deconvolution(m), "deconvnet"),
    ],
    ids=["saliency", "saliency-signed", "ixg", "guided", "deconvnet"],
)
def test_gradient_methods_match_captum(vgg, ours, kind: str) -> None:
    net, model, x = vgg
    exp = ours(model).attribute(x, target=TARGET)
    if kind in ("guided", "deconvnet"):
        cls = captum_attr.GuidedBackprop if kind == "guided" else captum_attr.Deconvolution
        ref = captum_range(cls, net, x)
    else:
        g = gradient_range(double(net), x.astype(np.float64)[None], float(x.std()))
        g = Range(g.mid[0], g.lo[0], g.hi[0])
        ref = {"saliency": g.abs(), "saliency-signed": g, "ixg": g * x.astype(np.float64)}[kind]
        cls = {"saliency": captum_attr.Saliency, "saliency-signed": captum_attr.Saliency}.get(
            kind, captum_attr.InputXGradient
        )
        kw = {"abs": kind == "saliency"} if cls is captum_attr.Saliency else {}
        theirs = captum_range(cls, net, x, **kw).mid  # captum, float64, at x: the anchor
        np.testing.assert_allclose(theirs, ref.mid, rtol=0, atol=1e-9 * np.abs(ref.mid).max())
    heat_ref = close(exp.raw, ref)
    same_heat(exp.heatmap, heat_ref, "max" if exp.method == "saliency" else "sum")


def test_the_check_rejects_small_errors(vgg) -> None:
    """The kink-aware comparison keeps its teeth: saliency 1% too large, or one element off by
    5% of the largest gradient, fails it."""
    net, model, x = vgg
    raw = onnxlens.Saliency(model, abs=False).attribute(x, target=TARGET).raw
    g = gradient_range(double(net), x.astype(np.float64)[None], float(x.std()))
    ref = Range(g.mid[0], g.lo[0], g.hi[0])
    close(raw, ref)
    with pytest.raises(AssertionError, match="outside the reference's range"):
        close(raw * 1.01, ref)
    one = raw.copy()
    one[np.unravel_index(np.argmax(np.abs(raw)), raw.shape)] += 0.05 * np.abs(raw).max()
    with pytest.raises(AssertionError, match="1 of 24576 elements outside"):
        close(one, ref)


@pytest.mark.parametrize("method", ["riemann_trapezoid", "gausslegendre", "riemann_left"])
def test_integrated_gradients_match_captum(vgg, method: str) -> None:
    net, model, x = vgg
    exp = onnxlens.IntegratedGradients(model, progress=False).attribute(
        x, target=TARGET, n_steps=24, method=method
    )
    ref = integrated_gradients_range(net, x, np.zeros_like(x), 24, method)
    if method == "riemann_trapezoid":
        # captum's trapezoid uses step 1/n at n points on [0, 1] (weights sum to (n-1)/n); ours
        # uses the exact rule, step 1/(n-1). Same points, so the two differ by that factor only.
        ref = ref * (24 / 23)
    # The left and trapezoid rules take a gradient at the all-zero baseline, where every pooling
    # window is an exact tie: any subgradient is right there, and its range reaches most
    # elements (weighted 1/24). Gauss-Legendre's first point is off the baseline.
    at_baseline = method != "gausslegendre"
    same_heat(exp.heatmap, close(exp.raw, ref, max_kinks=1.0 if at_baseline else MAX_KINKS))


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
    close(exp.raw, integrated_gradients_range(net, x, base, 16, "gausslegendre"))
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
    # Occlusion differences are of forward passes, continuous in x (a ReLU net is): no kinks.
    scale = float(np.abs(theirs[:, 0]).max())
    np.testing.assert_allclose(exp.raw, theirs[:, 0], atol=1e-3 * scale, rtol=0)
    assert nets.corr(exp.raw, theirs[:, 0]) >= 0.999
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


@pytest.mark.parametrize("noise", ["noise_level", "stdevs"])
def test_smoothgrad_is_the_mean_of_noisy_gradients(vgg, noise: str) -> None:
    """Against torch autograd (float64) on the same noisy inputs: `noise_level` is relative to
    each input's range, `stdevs` an absolute std (captum's NoiseTunnel meaning)."""
    net, model, x = vgg
    kw = {"noise_level": 0.1} if noise == "noise_level" else {"stdevs": 0.3}
    sg = onnxlens.SmoothGrad(model, magnitude=False, seed=3, progress=False).attribute(
        x, target=TARGET, nt_samples=6, **kw
    )
    rng = np.random.default_rng(3)
    span = (x.reshape(2, -1).max(1) - x.reshape(2, -1).min(1)).reshape(2, 1, 1, 1)
    sigma = 0.1 * span if noise == "noise_level" else np.float32(0.3)
    noise_draws = rng.standard_normal((6, *x.shape)).astype(np.float32)
    # float64 gradients at the same noisy points, each point's as a range; their mean.
    noisy = x.astype(np.float64)[None] + (sigma * noise_draws).astype(np.float64)
    g = gradient_range(double(net), noisy, float(x.std()))
    ref = Range(g.mid.mean(0), g.lo.mean(0), g.hi.mean(0))
    close(sg.raw, ref)
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
