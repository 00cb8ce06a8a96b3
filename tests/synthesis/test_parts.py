"""Parameterisations, transforms, the model-space map and priors: each map's adjoint is exact.

Linear maps get the dot-product test <A x, y> = <x, A^T y> in float64; nonlinear ones (the
sigmoid, the phase-only spectrum) central differences along random directions.
"""

from __future__ import annotations

import numpy as np
import pytest

from onnxlens.data.preprocess import PreprocessSpec
from onnxlens.synthesis import regularizers as R
from onnxlens.synthesis import transforms as T
from onnxlens.synthesis.optim import Adam, RMSprop
from onnxlens.synthesis.param import (
    COLOR_DECORRELATION,
    FFTImage,
    MacoImage,
    PixelImage,
    magnitude_spectrum,
    rfft2_freqs,
)
from onnxlens.synthesis.space import ModelSpace


def _fd_check(fn, grad_fn, x: np.ndarray, rng: np.random.Generator, eps: float = 1e-3) -> None:
    """<grad f(x), t> against the central difference of sum(c * f) along a random t."""
    t = rng.standard_normal(x.shape)
    x64 = x.astype(np.float64)
    c = rng.standard_normal(fn(x).shape)
    fd = ((c * fn(x64 + eps * t)).sum() - (c * fn(x64 - eps * t)).sum()) / (2 * eps)
    fn(x)  # the adjoint reads what the forward at x remembered
    analytic = (grad_fn(c).astype(np.float64) * t).sum()
    np.testing.assert_allclose(analytic, fd, rtol=2e-3, atol=1e-5)


@pytest.mark.parametrize("size", [(8, 8), (7, 10), (9, 5)])
@pytest.mark.parametrize("decorrelate,sigmoid", [(False, False), (True, True), (False, True)])
def test_fft_image_gradient(size, decorrelate, sigmoid) -> None:
    rng = np.random.default_rng(0)
    p = FFTImage(2, 3, size, sd=0.3, decorrelate=decorrelate, sigmoid=sigmoid, rng=rng)
    if not sigmoid:  # keep the clip's kinks away from the sample: small, around mid-grey
        p.params *= 0.01
        h, w = size
        p.params[0, :, :, 0, 0] = 0.5 * h * w / p._SCALE / p.scale[0, 0]
        assert 0.2 < p.image().min() and p.image().max() < 0.8

    def fn(params):
        p.params = params
        return p.image().astype(np.float64)

    _fd_check(fn, p.backward, p.params.copy(), rng)


def test_fft_image_matches_a_direct_inverse_dft() -> None:
    """The spatial image is the real inverse DFT of the Hermitian-completed scaled spectrum."""
    rng = np.random.default_rng(1)
    h, w = 6, 7
    p = FFTImage(1, 1, (h, w), sd=1.0, decorrelate=False, sigmoid=False, rng=rng)
    spec = (p.params[0, 0, 0] + 1j * p.params[1, 0, 0]) * p.scale
    yy, xx = np.mgrid[0:h, 0:w]
    ref = np.zeros((h, w))
    for ky in range(h):
        for kx in range(w):
            kxr = kx if kx <= w // 2 else w - kx  # columns beyond w/2 are conjugates
            kyr = ky if kx <= w // 2 else (-ky) % h
            v = spec[kyr, kxr] if kx <= w // 2 else np.conj(spec[kyr, kxr])
            ref += (v * np.exp(2j * np.pi * (ky * yy / h + kx * xx / w))).real
    ref /= h * w
    # numpy drops the imaginary part of the DC column's self-conjugate bins; so does the sum
    np.testing.assert_allclose(p._spatial(spec[None, None])[0, 0] / p._SCALE, ref, atol=1e-4)


@pytest.mark.parametrize("size", [(8, 8), (7, 9)])
def test_maco_image_gradient(size) -> None:
    rng = np.random.default_rng(2)
    photos = [rng.integers(0, 255, (20, 24, 3), dtype=np.uint8) for _ in range(2)]
    mag = magnitude_spectrum(photos, size)
    assert mag.shape == (3, size[0], size[1] // 2 + 1)
    p = MacoImage(2, mag, size, rng=rng)

    def fn(params):
        p.params = params
        return p.image().astype(np.float64)

    _fd_check(fn, p.backward, p.params.copy(), rng)
    # The magnitude is what it was set to: only phases move. (Columns 0 and w/2 of an rfft
    # hold self-conjugate pairs, so there random phases are not all realisable; the others are.)
    spec = np.fft.rfft2(p._spatial(p._spectrum()) / p._SCALE)
    inner = slice(1, (size[1] + 1) // 2)
    np.testing.assert_allclose(
        np.abs(spec)[..., inner], np.broadcast_to(p.magnitude, spec.shape)[..., inner], rtol=1e-3
    )


def test_pixel_image_gradient_and_range() -> None:
    rng = np.random.default_rng(3)
    p = PixelImage(2, 3, (5, 6), sd=1.0, rng=rng)

    def fn(params):
        p.params = params
        return p.image().astype(np.float64)

    _fd_check(fn, p.backward, p.params.copy(), rng)
    img = p.image()
    assert img.min() > 0 and img.max() < 1
    # the colour transform is lucid's normalised square root of the ImageNet colour correlation
    assert np.isclose(np.linalg.norm(COLOR_DECORRELATION, axis=0).max(), 1.0)


def test_spectrum_scaling_is_one_over_f() -> None:
    p = FFTImage(1, 3, (16, 16), decay_power=1.0)
    f = rfft2_freqs(16, 16)
    mask = f > 1 / 16
    np.testing.assert_allclose(p.scale[mask] * f[mask], 16.0, rtol=1e-5)  # sqrt(h w) / f * f


def _dot_test(tr: T.Transform, x: np.ndarray, rng: np.random.Generator) -> None:
    y = tr.forward(x)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    gx = tr.backward(gy)
    lhs = (y.astype(np.float64) * gy).sum()
    rhs = (x.astype(np.float64) * gx).sum()
    np.testing.assert_allclose(lhs, rhs, rtol=1e-5)


@pytest.mark.parametrize(
    "make",
    [
        lambda: T.Pad(3, value=0.0),
        lambda: T.Jitter(4),
        lambda: T.Affine(scales=[0.9, 1.1], angles=[-10, 7]),
        lambda: T.Affine(scales=[1.0], angles=[90]),
        lambda: T.Fit((9, 11), value=0.0),
        lambda: T.Fit((17, 12), value=0.0),
        lambda: T.Chain([T.Pad(2, 0.0), T.Jitter(3), T.Affine([0.95, 1.05], [-5, 5]), T.Jitter(1)]),
    ],
)
def test_transform_adjoints(make) -> None:
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 2, 13, 14)).astype(np.float32)
    tr = make()
    tr.sample(rng, 3)
    _dot_test(tr, x, rng)


def test_affine_matches_cv2_warp() -> None:
    """A rotation by 90 degrees about the centre is exact; a small rotation equals OpenCV's
    bilinear warpAffine with zero borders."""
    import cv2

    rng = np.random.default_rng(5)
    x = rng.random((1, 1, 9, 9)).astype(np.float32)
    tr = T.Affine(angles=[90])
    tr.sample(rng, 1)
    np.testing.assert_allclose(tr.forward(x)[0, 0], np.rot90(x[0, 0], k=1), atol=1e-5)
    tr = T.Affine(scales=[1.1], angles=[12])
    tr.sample(rng, 1)
    img = rng.random((15, 17)).astype(np.float32)
    m = cv2.getRotationMatrix2D(((17 - 1) / 2, (15 - 1) / 2), 12, 1.1)
    ref = cv2.warpAffine(img, m, (17, 15), flags=cv2.INTER_LINEAR, borderValue=0)
    ours = tr.forward(img[None, None])[0, 0]
    inner = (slice(3, -3), slice(3, -3))  # OpenCV rounds its weights to 1/32 in fixed point
    np.testing.assert_allclose(ours[inner], ref[inner], atol=0.04)


def _numpy_warp(x: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Reference bilinear warp in float64: src = centre + theta @ (dst - centre), zero outside."""
    n, _, h, w = x.shape
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    yy, xx = np.meshgrid(np.arange(h) - cy, np.arange(w) - cx, indexing="ij")
    out = np.zeros(x.shape, np.float64)
    for i in range(n):
        sy = cy + theta[i, 0, 0] * yy + theta[i, 0, 1] * xx
        sx = cx + theta[i, 1, 0] * yy + theta[i, 1, 1] * xx
        y0, x0 = np.floor(sy).astype(int), np.floor(sx).astype(int)
        fy, fx = sy - y0, sx - x0
        for dy, dx, wt in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx),
                           (1, 0, fy * (1 - fx)), (1, 1, fy * fx)):  # fmt: skip
            yi, xi = y0 + dy, x0 + dx
            inside = (yi >= 0) & (yi < h) & (xi >= 0) & (xi < w)
            vals = x[i][:, np.clip(yi, 0, h - 1), np.clip(xi, 0, w - 1)]
            out[i] += np.where(inside, vals * wt, 0.0)
    return out


def test_affine_matches_numpy_reference_and_its_transpose() -> None:
    """The C++ warp equals a float64 numpy gather; its adjoint equals the transpose of the
    explicit sampling matrix built column by column from the reference."""
    rng = np.random.default_rng(8)
    tr = T.Affine(scales=[0.9, 1.07], angles=[-13, 4, 30])
    tr.sample(rng, 3)
    x = rng.standard_normal((3, 2, 11, 14)).astype(np.float32)
    np.testing.assert_allclose(tr.forward(x), _numpy_warp(x, tr.theta), atol=1e-5)
    h, w = 6, 7
    tr.sample(rng, 1)
    basis = np.eye(h * w, dtype=np.float32).reshape(h * w, 1, h, w)
    matrix = np.stack([_numpy_warp(b[None], tr.theta)[0, 0].ravel() for b in basis], 1)
    g = rng.standard_normal((1, 1, h, w)).astype(np.float32)
    np.testing.assert_allclose(
        tr.backward(g)[0, 0].ravel(), matrix.T @ g.ravel().astype(np.float64), atol=1e-5
    )


def test_warp_kernel_rejects_wrong_arrays() -> None:
    from onnxlens import _core

    x = np.zeros((2, 3, 5, 5), np.float32)
    with pytest.raises(TypeError, match="float64"):
        _core.warp_affine(x, np.zeros((2, 2, 2), np.float32))
    with pytest.raises(ValueError, match=r"\(N, 2, 2\) with N = 2"):
        _core.warp_affine(x, np.zeros((3, 2, 2)))
    with pytest.raises(ValueError, match="non-contiguous"):
        _core.warp_affine_adjoint(x[:, :, :, ::-1], np.zeros((2, 2, 2)))


_FUSABLE_CHAINS = [
    (lambda: T.standard_transforms(), (37, 53)),
    (lambda: T.standard_transforms(), (64, 64)),
    (lambda: [T.Pad(3), T.Jitter(2)], (20, 21)),  # no warp: pads and crops only
    (lambda: [T.Jitter(4), T.Affine([0.9, 1.1], [-7, 5]), T.Jitter(3)], (30, 30)),
    (lambda: [T.Fit((40, 44), value=0.2), T.Affine([1.0], [33])], (30, 31)),  # grow, then warp
    (lambda: [T.Affine([1.2], [10]), T.Fit((20, 20))], (31, 33)),  # warp, then crop
]


@pytest.mark.parametrize("make,size", _FUSABLE_CHAINS)
def test_fused_chain_equals_its_transforms_one_by_one(make, size) -> None:
    """The one-pass C++ chain (`_core.warp_window`) gives the values and the adjoint of its
    transforms applied one by one (each checked on its own above), and is its own transpose."""
    transforms = make()
    fused, plain = T.Chain(transforms).fitted(size), T.Chain(transforms, fuse=False).fitted(size)
    assert fused._fusable and not plain._fusable
    rng = np.random.default_rng(12)
    fused.sample(rng, 3)  # the same transform objects: one draw serves both chains
    x = rng.random((3, 2, *size)).astype(np.float32)
    y = fused.forward(x)
    np.testing.assert_allclose(y, plain.forward(x), atol=1e-6)
    g = rng.standard_normal(y.shape).astype(np.float32)
    np.testing.assert_allclose(fused.backward(g), plain.backward(g), atol=1e-6)
    fused.forward(x)
    _dot_test(_Linear(fused, x), x, rng)


class _Linear(T.Transform):
    """A chain minus its constant fill: x -> F(x) - F(0), whose adjoint is F's (a dot test
    needs a linear map; pads make the chain affine)."""

    def __init__(self, chain: T.Chain, like: np.ndarray) -> None:
        self.chain, self.zero = chain, np.zeros_like(like)

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self.chain.forward(x) - self.chain.forward(self.zero)

    def backward(self, g: np.ndarray) -> np.ndarray:
        return self.chain.backward(g)


@pytest.mark.parametrize(
    "transforms",
    [
        [T.Affine([1.0], [5]), T.Pad(2)],  # a pad after the warp
        [T.Pad(2, 0.5), T.Jitter(1), T.Fit((9, 9), value=0.0)],  # two fill values
        [T.Affine([1.0], [5]), T.Affine([1.1], [0])],  # two warps
    ],
)
def test_chains_that_cannot_fuse_run_one_by_one(transforms) -> None:
    assert not T.Chain(transforms)._fusable


def test_a_fit_that_grows_after_the_warp_runs_one_by_one() -> None:
    chain = T.Chain([T.Affine([1.0], [20]), T.Fit((16, 15))])
    rng = np.random.default_rng(2)
    chain.sample(rng, 2)
    x = rng.random((2, 1, 11, 12)).astype(np.float32)
    y = chain.forward(x)
    assert chain._window is None and y.shape == (2, 1, 16, 15)
    assert np.all(y[:, :, 0] == 0.5)  # the Fit's fill where it grew, not the warp's zeros
    _dot_test(_Linear(chain, x), x, rng)


def test_window_kernel_rejects_wrong_arrays() -> None:
    from onnxlens import _core

    x = np.zeros((2, 3, 5, 5), np.float32)
    theta, off = np.zeros((2, 2, 2)), np.zeros((2, 2), np.int64)
    with pytest.raises(TypeError, match="int64"):
        _core.warp_window(x, theta, (5, 5), off.astype(np.int32), off, (5, 5), 0.5)
    with pytest.raises(ValueError, match="post: expected 2"):
        _core.warp_window(x, theta, (5, 5), off, off[:1], (5, 5), 0.5)
    with pytest.raises(ValueError, match="positive"):
        _core.warp_window_adjoint(x, theta, (0, 5), off, off, (5, 5), 0.5)


def test_standard_chain_fits_back_to_size() -> None:
    chain = T.Chain(T.standard_transforms()).fitted((32, 40))
    assert chain.output_size((32, 40)) == (32, 40)
    rng = np.random.default_rng(6)
    chain.sample(rng, 2)
    x = rng.random((2, 3, 32, 40)).astype(np.float32)
    assert chain.forward(x).shape == (2, 3, 32, 40)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("order", ["RGB", "BGR"])
def test_model_space_is_the_preprocessing(layout, order) -> None:
    spec = PreprocessSpec(size=(6, 5), layout=layout, channel_order=order)
    space = ModelSpace(spec)
    rng = np.random.default_rng(7)
    u8 = rng.integers(0, 256, (2, 6, 5, 3), dtype=np.uint8)
    ref = spec.to_tensor(u8)  # what onnxlens feeds the model for these images
    img = u8.transpose(0, 3, 1, 2).astype(np.float32) / 255
    np.testing.assert_allclose(space.to_model(img), ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(space.to_image(space.to_model(img)), img, atol=1e-5)
    gy = rng.standard_normal(ref.shape).astype(np.float32)
    lhs = ((space.to_model(img) - space.to_model(np.zeros_like(img))) * gy).sum()
    np.testing.assert_allclose(lhs, (img * space.backward(gy)).sum(), rtol=1e-4)


@pytest.mark.parametrize(
    "reg", [R.lp(1.0), R.lp(2.0), R.lp(3.0), R.total_variation(2.0), R.total_variation(1.0)]
)
def test_regularizer_gradients(reg) -> None:
    rng = np.random.default_rng(8)
    x = rng.random((2, 3, 6, 7)).astype(np.float32)
    _fd_check(lambda v: reg.value(v), lambda c: c[:, None, None, None] * reg.grad(x), x, rng)


def test_total_variation_against_numpy_definition() -> None:
    rng = np.random.default_rng(9)
    x = rng.random((1, 1, 4, 5))
    dx = np.diff(x, axis=3)
    dy = np.diff(x, axis=2)
    ref = (dx[..., :-1, :] ** 2 + dy[..., :, :-1] ** 2).sum()
    ref += (dx[..., -1, :] ** 2).sum() + (dy[..., :, -1] ** 2).sum()
    np.testing.assert_allclose(R.total_variation(2.0).value(x)[0] * x.size, ref, rtol=1e-6)


def test_input_diff_gradient() -> None:
    rng = np.random.default_rng(10)
    ref = rng.random((1, 3, 4, 4)).astype(np.float32)
    reg = R.input_diff(ref)
    x = rng.random((2, 3, 4, 4)).astype(np.float32)
    _fd_check(lambda v: reg.value(v), lambda c: c[:, None, None, None] * reg.grad(x), x, rng)


def test_adam_matches_the_paper_update() -> None:
    """Three ascent steps of Adam against Algorithm 1 of Kingma & Ba, written out."""
    rng = np.random.default_rng(11)
    p = rng.standard_normal(5).astype(np.float32)
    ref = p.astype(np.float64).copy()
    opt = Adam(lr=0.1)
    m = v = np.zeros(5)
    for t in range(1, 4):
        g = rng.standard_normal(5)
        opt.step(p, g.astype(np.float32))
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        ref += 0.1 * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
    np.testing.assert_allclose(p, ref, rtol=1e-5)


def test_rmsprop_normalises_per_image() -> None:
    p1 = np.zeros((2, 3), np.float32)
    p2 = np.zeros((2, 3), np.float32)
    g = np.array([[1.0, 2.0, 2.0], [0.0, 0.0, 3.0]], np.float32)
    RMSprop(lr=0.1).step(p1, g)
    RMSprop(lr=0.1).step(p2, 1000 * g)  # the objective's scale does not change the step
    np.testing.assert_allclose(p1, p2, rtol=1e-5)


def test_rmsprop_normalises_each_image_of_a_spectrum() -> None:
    """A spectrum's parameters are (re/im, N, ...): the norm is per image across both parts, so
    scaling one image's gradient changes neither its step nor the other image's."""
    rng = np.random.default_rng(12)
    g = rng.standard_normal((2, 2, 3, 4, 3)).astype(np.float32)
    p1 = np.zeros_like(g)
    p2 = np.zeros_like(g)
    RMSprop(lr=0.1).step(p1, g, batch_axis=1)
    g2 = g.copy()
    g2[:, 1] *= 50.0
    RMSprop(lr=0.1).step(p2, g2, batch_axis=1)
    np.testing.assert_allclose(p1, p2, rtol=1e-5)
    norm = np.sqrt(
        (g[:, 0] ** 2).sum()
    )  # the first RMSprop step is lr * (g/|g|) / sqrt(0.1 (g/|g|)^2)
    gn = g[:, 0] / norm
    np.testing.assert_allclose(p1[:, 0], 0.1 * gn / (np.sqrt(0.1 * gn * gn) + 1e-7), rtol=1e-4)
