"""In-graph objectives: values against numpy on the model's activations, gradients against
central differences, and the whole chain parameterisation -> transforms -> model -> objective
against central differences and PyTorch autograd."""

from __future__ import annotations

import numpy as np
import pytest

import onnxlens
from onnxlens import synthesis as S
from onnxlens.errors import ConfigurationError
from onnxlens.synthesis import transforms as T
from onnxlens.synthesis.space import ModelSpace
from synthetic import tiny_cnn

N = 3


@pytest.fixture(scope="module")
def tiny():
    return onnxlens.Model(tiny_cnn(size=12), device="cpu")


def _acts(model, x, layer):
    return model.activations(x, [layer])[layer].astype(np.float64)


def _gram_cos(a: np.ndarray) -> np.ndarray:
    n, c = a.shape[:2]
    f = a.reshape(n, c, -1)
    g = np.einsum("ncp,ndp->ncd", f, f).reshape(n, -1) / f.shape[2]
    g /= np.linalg.norm(g, axis=1, keepdims=True) + 1e-8
    return g @ g.T


REFERENCES = {
    "channel": (S.channel("relu_out", 2), lambda m, x: _acts(m, x, "relu_out")[:, 2].mean((1, 2))),
    "neuron": (S.neuron("conv_out", 1), lambda m, x: _acts(m, x, "conv_out")[:, 1, 6, 6]),
    "neuron_xy": (S.neuron("pool_out", 3, y=1, x=4), lambda m, x: _acts(m, x, "pool_out")[:, 3, 1, 4]),
    "class": (S.class_logit(4), lambda m, x: m.predict(x)[:, 4].astype(np.float64)),
    "vector": (S.channel("flat", 1), lambda m, x: _acts(m, x, "flat")[:, 1]),
    "deepdream": (S.deepdream("relu_out"), lambda m, x: (_acts(m, x, "relu_out") ** 2).mean((1, 2, 3))),
    "direction": (
        S.direction("conv_out", [1.0, -2.0, 0.5, 3.0]),
        lambda m, x: np.einsum("nchw,c->nhw", _acts(m, x, "conv_out"), [1.0, -2.0, 0.5, 3.0]).mean((1, 2)),
    ),
    "diversity": (
        S.diversity("relu_out"),
        lambda m, x: -(_gram_cos(_acts(m, x, "relu_out")) * (1 - np.eye(N))).sum(1) / (N - 1),
    ),
    "sum": (
        S.channel("relu_out", 0) - 0.5 * S.deepdream("conv_out"),
        lambda m, x: _acts(m, x, "relu_out")[:, 0].mean((1, 2)) - 0.5 * (_acts(m, x, "conv_out") ** 2).mean((1, 2, 3)),
    ),
    "rows": (
        S.stack_targets([S.channel("relu_out", 0), S.channel("relu_out", 3), S.class_logit(1)]),
        lambda m, x: np.array(
            [
                _acts(m, x, "relu_out")[0, 0].mean(),
                _acts(m, x, "relu_out")[1, 3].mean(),
                m.predict(x)[2, 1],
            ]
        ),
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", list(REFERENCES))
def test_objective_values_and_gradients(tiny, name) -> None:
    objective, reference = REFERENCES[name]
    f = S.ObjectiveFunction(tiny, objective, N, (12, 12))
    rng = np.random.default_rng(0)
    x = rng.standard_normal(f.input_shape).astype(np.float32)
    values, grad = f(x)
    np.testing.assert_allclose(values, reference(tiny, x), rtol=1e-4, atol=1e-5)
    # central differences along random directions, in float64 numpy through the references
    for _ in range(2):
        t = rng.standard_normal(x.shape)
        eps = 1e-3
        fd = (
            reference(tiny, (x + eps * t).astype(np.float32)).sum()
            - reference(tiny, (x - eps * t).astype(np.float32)).sum()
        ) / (2 * eps)
        np.testing.assert_allclose((grad.astype(np.float64) * t).sum(), fd, rtol=2e-2, atol=2e-3)


def test_a_middle_layer_objective_runs_only_the_layers_it_needs(tiny) -> None:
    """The compiled graph keeps the objective and the nodes it needs (ORT would run the rest
    every step): none of the nodes after the layer, and not the model's outputs."""
    f = S.ObjectiveFunction(tiny, S.channel("conv_out", 1), N, (12, 12))
    graph = f.function.graph.proto.graph
    forward = {o for n in tiny.proto.graph.node for o in n.output}
    kept = {o for n in graph.node for o in n.output} & forward
    assert "conv_out" in kept and not kept & {"relu_out", "pool_out", "flat", *tiny.output_names}
    assert set(tiny.output_names).isdisjoint(o.name for o in graph.output)


def test_alignment_value(tiny) -> None:
    f = S.ObjectiveFunction(tiny, S.alignment("conv_out", decay_ratio=2.0), N, (12, 12))
    x = np.random.default_rng(1).standard_normal(f.input_shape).astype(np.float32)
    a = _acts(tiny, x, "conv_out").reshape(N, -1)
    ref = np.zeros(N)
    for i in range(N):
        for j in range(N):
            if i != j:
                ref[i] -= ((a[i] - a[j]) ** 2).sum() / (1 + abs(i - j)) ** 2 / a.shape[1]
    np.testing.assert_allclose(f.values(x), ref, rtol=1e-4)


def test_class_objective_uses_the_logit_before_softmax(caplog) -> None:
    from onnx import helper

    proto = tiny_cnn(size=8)
    g = proto.graph
    g.node.append(helper.make_node("Softmax", ["logits"], ["probs"], axis=1, name="sm"))
    g.output[0].name = "probs"
    model = onnxlens.Model(proto, device="cpu")
    x = np.random.default_rng(2).standard_normal((2, 3, 8, 8)).astype(np.float32)
    with caplog.at_level("INFO", logger="onnxlens"):
        f = S.ObjectiveFunction(model, S.class_logit(3), 2, (8, 8))
    assert "Softmax" in caplog.text
    logits = model.activations(x, ["logits"])["logits"]
    np.testing.assert_allclose(f.values(x), logits[:, 3], rtol=1e-5)
    p = S.ObjectiveFunction(model, S.class_logit(3, pre_activation=False), 2, (8, 8))
    np.testing.assert_allclose(p.values(x), model.predict(x)[:, 3], rtol=1e-5)


@pytest.mark.parametrize(
    "objective,message",
    [
        (S.channel("relu_out", 9), "out of range"),
        (S.channel("relu_0ut", 1), "did you mean"),
        (S.channel("relu_out", 0).restrict(5), "outside a batch"),
        (S.direction("conv_out", [1.0, 2.0]), "4 channels"),
    ],
)
def test_objective_errors(tiny, objective, message) -> None:
    with pytest.raises(onnxlens.OnnxLensError, match=message):
        S.ObjectiveFunction(tiny, objective, N, (12, 12))


def test_string_shorthand_and_bad_spec(tiny) -> None:
    f = S.ObjectiveFunction(tiny, "relu_out:1", 1, (12, 12))
    x = np.random.default_rng(3).standard_normal(f.input_shape).astype(np.float32)
    np.testing.assert_allclose(
        f.values(x), _acts(tiny, x, "relu_out")[:, 1].mean((1, 2)), rtol=1e-5
    )
    with pytest.raises(ConfigurationError, match="layer:channel"):
        S.as_objective("relu_out")


@pytest.mark.parametrize("param", ["fft", "pixel", "maco"])
def test_whole_chain_gradient(tiny, param) -> None:
    """d objective / d params through parameterisation, a fixed draw of the standard transforms,
    the preprocessing and the model, against central differences of the same chain."""
    rng = np.random.default_rng(4)
    size = (12, 12)
    space = ModelSpace(tiny.preprocess.with_overrides(size=size))
    chain = T.Chain([T.Pad(2), T.Jitter(2), T.Affine([0.9, 1.1], [-8, 8]), T.Jitter(1)]).fitted(
        size
    )
    chain.sample(rng, 2)
    if param == "fft":
        p = S.FFTImage(2, 3, size, sd=0.5, rng=rng)
    elif param == "pixel":
        p = S.PixelImage(2, 3, size, sd=0.5, rng=rng)
    else:
        photos = [rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)]
        p = S.MacoImage(2, S.magnitude_spectrum(photos, size), size, rng=rng)
    f = S.ObjectiveFunction(tiny, S.channel("conv_out", 1) + S.deepdream("conv_out"), 2, size)

    def total(params):
        p.params = params.astype(np.float32)
        return float(f.values(space.to_model(chain.forward(p.image()))).astype(np.float64).sum())

    params0 = p.params.copy()
    total(params0)
    img = p.image()
    _, gx = f(space.to_model(chain.forward(img)))
    grad = p.backward(chain.backward(space.backward(gx)))
    for _ in range(2):
        t = rng.standard_normal(params0.shape)
        eps = 1e-2 if param == "maco" else 3e-3
        fd = (total(params0 + eps * t) - total(params0 - eps * t)) / (2 * eps)
        np.testing.assert_allclose((grad.astype(np.float64) * t).sum(), fd, rtol=3e-2, atol=1e-3)


def test_one_step_matches_torch_autograd() -> None:
    """The same step written in PyTorch (FFT image, decorrelation, sigmoid, normalisation, the
    network, the channel objective, autograd) gives the same parameter gradient."""
    torch = pytest.importorskip("torch", reason="needs torch (the demo extra)")
    import io

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 6, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(6, 5, 3, stride=2),
        torch.nn.ReLU(),
    ).eval()
    size = (16, 16)
    buf = io.BytesIO()
    torch.onnx.export(
        net, torch.zeros(1, 3, *size), buf, input_names=["input"], output_names=["out"],
        dynamic_axes={"input": {0: "n"}, "out": {0: "n"}}, opset_version=17, dynamo=False,
    )  # fmt: skip
    model = onnxlens.Model(buf.getvalue(), device="cpu")
    rng = np.random.default_rng(5)
    p = S.FFTImage(2, 3, size, sd=0.5, rng=rng)
    space = ModelSpace(model.preprocess.with_overrides(size=size))
    f = S.ObjectiveFunction(model, S.channel("out", 3), 2, size)
    _, gx = f(space.to_model(p.image()))
    ours = p.backward(space.backward(gx))

    par = torch.tensor(p.params, dtype=torch.float64, requires_grad=True)
    spec = torch.complex(par[0], par[1]) * torch.tensor(p.scale, dtype=torch.float64)
    img = torch.fft.irfft2(spec, s=size) / 4
    m = torch.tensor(S.param.COLOR_DECORRELATION, dtype=torch.float64)
    img = torch.sigmoid(torch.einsum("ij,njhw->nihw", m, img))
    spec_ = model.preprocess
    mean = torch.tensor(spec_.mean, dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor(spec_.std, dtype=torch.float64).view(1, 3, 1, 1)
    x = (img * 255 * spec_.scale - mean) / std
    out = net.double()(x)
    out[:, 3].mean((1, 2)).sum().backward()
    np.testing.assert_allclose(ours, par.grad.numpy(), rtol=1e-3, atol=1e-6 * np.abs(ours).max())


def test_objectives_read_each_tensor_in_its_own_layout() -> None:
    """An NHWC model (Keras-style: a Transpose, then NCHW convolutions): relu_out is NCHW inside
    it, so channel 2 is its axis 1 and the centre unit is indexed on axes 2 and 3."""
    model = onnxlens.Model(tiny_cnn(size=12, layout="NHWC"), device="cpu")
    x = np.random.default_rng(3).standard_normal((2, 12, 12, 3)).astype(np.float32)
    acts = _acts(model, x, "relu_out")
    assert acts.shape == (2, 4, 12, 12)  # NCHW, though the model takes NHWC images
    f = S.ObjectiveFunction(model, S.channel("relu_out", 2), 2, (12, 12))
    np.testing.assert_allclose(f.values(x), acts[:, 2].mean((1, 2)), rtol=1e-5, atol=1e-6)
    f = S.ObjectiveFunction(model, S.neuron("relu_out", 3), 2, (12, 12))
    np.testing.assert_allclose(f.values(x), acts[:, 3, 6, 6], rtol=1e-5, atol=1e-6)
