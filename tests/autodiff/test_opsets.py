"""Older models: opsets 7-12 and IR version 3 (initializers also listed as graph inputs).

Every rule's emission is checked where its operator changed signature: MaxPool's backward before
ScatterElements could add (opset 16) or existed (11), Gemm's required C before opset 11, Pad and
Slice with attributes (before 11 / 10), Expand and ConstantOfShape before they exist (8 / 9), and
the un-broadcast of dims shape inference leaves open before ReduceSum takes axes as an input
(13). References: central differences in float64, the same model at opset 17, torch autograd on
real architectures exported at each opset (torch's TorchScript exporter writes opsets 7-12 itself;
onnx.version_converter cannot take these models down: it has no downgrade adapters for Relu,
Clip, BatchNormalization...), and the same PP-OCRv4 detector converted to opset 13.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from vjp_helpers import check_vjp, check_vjp_reference, op_model, session

from onnxlens.autodiff import build_vjp

sys.path.insert(0, str(Path(__file__).parents[1]))
from synthetic import tiny_cnn

F32 = TensorProto.FLOAT


def _distinct(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Inputs without ties, so central differences through MaxPool are well defined."""
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    return (rng.permutation(n).reshape(shape) / n).astype(np.float32)


def as_ir3(model: onnx.ModelProto) -> onnx.ModelProto:
    """IR version 3: every initializer is also a graph input (what exporters wrote before IR 4)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    m.ir_version = 3
    listed = {v.name for v in m.graph.input}
    for t in m.graph.initializer:
        if t.name not in listed:
            m.graph.input.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    onnx.checker.check_model(m)
    return m


def at_opset(model: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    """The same graph declared at `opset` (for graphs whose ops mean the same at every opset)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    del m.opset_import[:]
    m.opset_import.append(helper.make_opsetid("", opset))
    onnx.checker.check_model(m)
    return m


def _grad(model: onnx.ModelProto, x: np.ndarray, c: np.ndarray, out: str = "logits") -> np.ndarray:
    vg = build_vjp(model, [out], ["x"])
    (g,) = session(vg.proto).run([vg.grad_outputs["x"]], {"x": x, vg.seed_inputs[out]: c})
    return g


# -- MaxPool before opset 16 ---------------------------------------------------------------------

MAXPOOL_CASES = [
    (11, {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    (12, {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}),
    (15, {"kernel_shape": [3, 2], "strides": [1, 1], "dilations": [2, 1]}),
    (11, {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [0, 1, 2, 0], "ceil_mode": 1}),
    (8, {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    (9, {"kernel_shape": [2, 2], "strides": [2, 2]}),  # non-overlapping, no ScatterElements yet
]


@pytest.mark.parametrize(
    ("opset", "attrs"), MAXPOOL_CASES, ids=[f"opset{c[0]}-{i}" for i, c in enumerate(MAXPOOL_CASES)]
)
def test_max_pool_before_opset16_matches_finite_differences(opset, attrs):
    if "dilations" in attrs and opset < 10:
        pytest.skip("MaxPool dilations exist from opset 10")
    m = op_model("MaxPool", {"x": ["N", 3, 9, 10]}, attrs, opset=opset, dtype=F32)
    vg = build_vjp(m, ["y0"], ["x"])
    assert "ScatterElements" not in {n.op_type for n in vg.proto.graph.node}
    check_vjp_reference(m, {"x": _distinct((2, 3, 9, 10), opset)}, ["x"], ["y0"])


def test_max_pool_before_opset16_ties_go_to_the_first_element_as_torch():
    torch = pytest.importorskip("torch")
    m = op_model(
        "MaxPool",
        {"x": ["N", 2, 7, 7]},
        {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]},
        opset=11,
        dtype=F32,
    )
    rng = np.random.default_rng(0)
    x = np.round(rng.standard_normal((2, 2, 7, 7)) * 1.5).astype(np.float32)  # many ties
    x[0, 0] = 0.0  # every window a tie
    c = rng.standard_normal((2, 2, 4, 4)).astype(np.float32)
    vg = build_vjp(m, ["y0"], ["x"])
    (g,) = session(vg.proto).run([vg.grad_outputs["x"]], {"x": x, vg.seed_inputs["y0"]: c})
    xt = torch.from_numpy(x).requires_grad_(True)
    torch.nn.functional.max_pool2d(xt, 3, 2, 1).backward(torch.from_numpy(c))
    np.testing.assert_allclose(g, xt.grad.numpy(), rtol=1e-6, atol=1e-6)


# -- other rules whose operator changed signature ------------------------------------------------


@pytest.mark.parametrize("opset", [7, 9, 10, 11])
@pytest.mark.parametrize(("ta", "tb"), [(0, 0), (1, 0), (0, 1), (1, 1)])
def test_gemm_before_opset11(opset, ta, tb):
    a_shape = [4, 3] if ta else [3, 4]
    b_shape = [5, 4] if tb else [4, 5]
    rng = np.random.default_rng(ta * 2 + tb)
    m = op_model(
        "Gemm",
        {"a": a_shape, "b": b_shape, "c": [5]},
        {"transA": ta, "transB": tb, "alpha": 0.7, "beta": 1.3},
        opset=opset,
    )
    check_vjp(
        m, {k: rng.standard_normal(s) for k, s in zip("abc", (a_shape, b_shape, [5]), strict=True)}
    )


@pytest.mark.parametrize("opset", [7, 10])
def test_pad_attribute_form(opset):
    m = op_model(
        "Pad", {"x": ["N", 2, 4, 5]}, {"pads": [0, 0, 1, 2, 0, 1, 0, 3], "value": 1.5}, opset=opset
    )
    check_vjp(m, {"x": np.random.default_rng(0).standard_normal((2, 2, 4, 5))})


def test_slice_attribute_form_opset9():
    m = op_model(
        "Slice",
        {"x": ["N", 3, 6, 7]},
        {"starts": [1, -5, 2], "ends": [3, -1, 100], "axes": [1, 2, 3]},
        opset=9,
    )
    check_vjp(m, {"x": np.random.default_rng(0).standard_normal((2, 3, 6, 7))})


def test_slice_input_form_opset10():
    consts = {
        "s": np.array([1, -5], np.int64),
        "e": np.array([3, 2**40], np.int64),
        "a": np.array([1, 3], np.int64),
    }
    m = op_model("Slice", {"x": ["N", 3, 6, 7]}, consts=consts, opset=10)
    check_vjp(m, {"x": np.random.default_rng(1).standard_normal((2, 3, 6, 7))})


# -- whole models: opsets 7-12 and IR 3 against the same model at opset 17 -----------------------


def _tiny_overlapping(opset: int) -> onnx.ModelProto:
    """tiny_cnn with a 3x3 stride-2 MaxPool (overlapping windows) and a ReduceMean head."""
    m = tiny_cnn(size=9)
    for n in m.graph.node:
        if n.op_type == "MaxPool":
            del n.attribute[:]
            n.attribute.extend(
                [
                    helper.make_attribute("kernel_shape", [3, 3]),
                    helper.make_attribute("strides", [2, 2]),
                    helper.make_attribute("pads", [1, 1, 1, 1]),
                ]
            )
        if n.op_type == "GlobalAveragePool":
            n.op_type = "ReduceMean"
            n.attribute.extend([helper.make_attribute("axes", [2, 3])])
    return at_opset(m, opset) if opset < 18 else m


@pytest.mark.parametrize("ir3", [False, True], ids=["ir-default", "ir3"])
@pytest.mark.parametrize("opset", [7, 8, 9, 10, 11, 12])
def test_small_cnn_at_old_opsets_matches_opset17(opset, ir3):
    rng = np.random.default_rng(opset)
    x = rng.standard_normal((3, 3, 9, 9)).astype(np.float32)
    c = rng.standard_normal((3, 5)).astype(np.float32)
    for make in (lambda o: at_opset(tiny_cnn(size=9), o), _tiny_overlapping):
        m = make(opset)
        if ir3:
            m = as_ir3(m)
        ref = _grad(make(17), x, c)
        np.testing.assert_allclose(
            _grad(m, x, c), ref, rtol=1e-5, atol=1e-6 * float(np.abs(ref).max())
        )


def test_ir3_vjp_graph_lists_its_constants_as_inputs():
    m = as_ir3(at_opset(tiny_cnn(), 8))
    vg = build_vjp(m, ["logits"], ["x"])
    names = {v.name for v in vg.proto.graph.input}
    assert all(t.name in names for t in vg.proto.graph.initializer)
    assert vg.proto.ir_version == 3


def test_unbroadcast_before_opset13_uses_the_input_size():
    """Symbolic dims shape inference does not unify (two names for the batch): before opset 13
    the shapes read off a run at the pinned input size decide, without input_shape= from the
    user when the model's own size is static."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((1, 3, 1, 1)).astype(np.float32)
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Mul", ["r", "w"], ["m"]),
        helper.make_node("Add", ["m", "r2"], ["y"]),
        helper.make_node("Sigmoid", ["x"], ["r2"]),
    ]
    graph = helper.make_graph(
        [nodes[0], nodes[3], nodes[1], nodes[2]],
        "g",
        [helper.make_tensor_value_info("x", F32, ["N", 3, 4, 5])],
        [helper.make_tensor_value_info("y", F32, ["M", 3, 4, 5])],
        initializer=[numpy_helper.from_array(w, "w")],
        value_info=[
            helper.make_tensor_value_info("m", F32, ["A", 3, 4, 5]),
            helper.make_tensor_value_info("r2", F32, ["B", 3, 4, 5]),
        ],
    )
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    c = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    grads = {}
    for opset in (12, 13):
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=7)
        vg = build_vjp(m, ["y"], ["x"])
        (grads[opset],) = session(vg.proto).run(
            [vg.grad_outputs["x"]], {"x": x, vg.seed_inputs["y"]: c}
        )
    s = 1 / (1 + np.exp(-x))
    ref = c * w * (x > 0) + c * s * (1 - s)
    np.testing.assert_allclose(grads[12], ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grads[13], ref, rtol=1e-5, atol=1e-6)


# -- real architectures exported at opsets 7-12 --------------------------------------------------

TORCH_CASES = [
    *[("resnet18", opset) for opset in (7, 8, 9, 10, 11, 12)],  # overlapping MaxPool, Gemm
    ("mobilenet_v2", 7),  # Clip with attributes
    ("mobilenet_v2", 10),
    ("mobilenet_v3_large", 8),  # HardSigmoid * x, SE blocks
    ("mobilenet_v3_large", 12),
    ("densenet121", 8),  # Pad with attributes, AveragePool, Concat
]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "opset"), TORCH_CASES, ids=[f"{n}-{o}" for n, o in TORCH_CASES])
def test_torch_exports_at_old_opsets_match_autograd(name, opset, tmp_path):
    torch = pytest.importorskip("torch")
    import zoo

    torch.set_num_threads(2)
    torch.manual_seed(0)
    net = zoo.randomize(zoo.ZOO[name]()).eval()
    path = tmp_path / f"{name}_{opset}.onnx"
    zoo.export(net, path, (64, 64), batch=2, opset=opset)
    proto = onnx.load(str(path))
    assert proto.opset_import[0].version == opset
    if opset < 9:  # the exporter writes IR 3 there, initializers listed as inputs
        assert proto.ir_version == 3
        assert {t.name for t in proto.graph.initializer} <= {v.name for v in proto.graph.input}
    rng = np.random.default_rng(opset)
    x = rng.standard_normal((3, 3, 64, 64)).astype(np.float32)
    c = rng.standard_normal((3, 1000)).astype(np.float32)
    vg = build_vjp(proto, ["logits"], ["input"])
    (g,) = session(vg.proto).run(
        [vg.grad_outputs["input"]], {"input": x, vg.seed_inputs["logits"]: c}
    )
    for p in net.parameters():
        p.requires_grad_(False)

    def autograd(dtype: type) -> np.ndarray:
        xt = torch.from_numpy(x.astype(dtype)).requires_grad_(True)
        net.to(torch.float64 if dtype is np.float64 else torch.float32)(xt).backward(
            torch.from_numpy(c.astype(dtype))
        )
        return xt.grad.numpy()

    def rel(a: np.ndarray, ref: np.ndarray) -> float:
        return float(np.abs(a - ref).max() / np.abs(ref).max())

    ref = autograd(np.float32)
    if rel(g, ref) > 1e-4:
        # Float32 near-ties (ReLU inputs within rounding of 0, which then feed MaxPool windows
        # of zeros) are routed by each implementation's own forward values: the fair reference
        # is float64 autograd, which onnxlens must be as close to as torch's float32 is.
        ref64 = autograd(np.float64)
        assert rel(g, ref64) <= max(1e-4, 1.5 * rel(ref, ref64))


# -- a real opset-12 detector with dynamic H/W ---------------------------------------------------


def _ppocr_det() -> Path:
    spec = importlib.util.find_spec("rapidocr_onnxruntime")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("rapidocr-onnxruntime is not installed")
    p = Path(next(iter(spec.submodule_search_locations)), "models", "ch_PP-OCRv4_det_infer.onnx")
    if not p.exists():
        pytest.skip(f"{p} is missing")
    return p


@pytest.mark.slow
def test_ppocrv4_detector_opset12_vjp_matches_opset13():
    """PP-OCRv4 det (opset 12, dynamic batch/H/W; shape inference names the batch differently on
    the two operands of its FPN Adds): Model.vjp works from the array's shape alone and equals
    the gradient of the same model converted to opset 13 (run-time un-broadcast there)."""
    from onnx import version_converter

    from onnxlens import Model

    path = _ppocr_det()
    m12 = Model(path, device="cpu", threads=2)
    assert m12.opset == 12
    m13 = Model(
        version_converter.convert_version(onnx.load(str(path)), 13), device="cpu", threads=2
    )
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 64, 96)).astype(np.float32)
    out = m12.output_names[0]
    c = rng.standard_normal(m12.predict(x).shape).astype(np.float32)
    g12 = m12.vjp(x, {out: c})["input"]
    g13 = m13.vjp(x, {m13.output_names[0]: c})["input"]
    assert g12.shape == x.shape and np.abs(g13).max() > 0
    np.testing.assert_allclose(g12, g13, rtol=1e-4, atol=1e-5 * float(np.abs(g13).max()))


@pytest.mark.parametrize("opset", [7, 8])
def test_abs_before_sign_exists(opset):
    m = op_model("Abs", {"x": ["N", 3, 4]}, opset=opset)
    check_vjp(m, {"x": np.random.default_rng(0).standard_normal((2, 3, 4))})


@pytest.mark.parametrize("op", ["Max", "Min"])
@pytest.mark.parametrize("opset", [8, 10])
def test_max_min_before_float_equal(op, opset):
    m = op_model(op, {"a": ["N", 3, 4], "b": [3, 1]}, opset=opset)
    rng = np.random.default_rng(1)
    check_vjp(m, {"a": rng.standard_normal((2, 3, 4)), "b": rng.standard_normal((3, 1))})


@pytest.mark.parametrize("op", ["ReduceMax", "ReduceMin"])
def test_reduce_max_min_before_float_equal(op):
    m = op_model(op, {"x": ["N", 3, 4, 5]}, {"axes": [2, 3], "keepdims": 0}, opset=10)
    check_vjp(m, {"x": np.random.default_rng(2).standard_normal((2, 3, 4, 5))})


def test_global_max_pool_before_opset11_says_what_to_do():
    from onnxlens.errors import UnsupportedOperatorError

    m = op_model("GlobalMaxPool", {"x": ["N", 3, 4, 5]}, opset=10, dtype=F32)
    with pytest.raises(UnsupportedOperatorError, match="convert_version"):
        build_vjp(m, ["y0"], ["x"])


def test_model_gradient_on_an_ir3_opset7_model_equals_opset17():
    from onnxlens import Model

    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 3, 9, 9)).astype(np.float32)
    old = Model(as_ir3(_tiny_overlapping(7)), device="cpu", threads=1)
    new = Model(_tiny_overlapping(17), device="cpu", threads=1)
    ref = new.gradient(x, [0, 2, 4])
    np.testing.assert_allclose(
        old.gradient(x, [0, 2, 4]), ref, rtol=1e-5, atol=1e-6 * float(np.abs(ref).max())
    )
    _, grads, _ = old.activations_and_gradients(x, ["relu_out"], 1)
    _, grads17, _ = new.activations_and_gradients(x, ["relu_out"], 1)
    np.testing.assert_allclose(grads["relu_out"], grads17["relu_out"], rtol=1e-5, atol=1e-7)


def _fully_dynamic_mul(opset: int) -> onnx.ModelProto:
    """y = Relu(x) * w with every dim symbolic (no input size, so no probe): which axes of w were
    broadcast is known only at run time."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Mul", ["r", "w"], ["y"])],
        "g",
        [
            helper.make_tensor_value_info("x", F32, ["N", "C", "H", "W"]),
            helper.make_tensor_value_info("w", F32, [1, "C2", 1, "K"]),
        ],
        [helper.make_tensor_value_info("y", F32, None)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=7)


@pytest.mark.parametrize("opset", [10, 11, 12, 13])
def test_run_time_unbroadcast_before_opset13(opset):
    rng = np.random.default_rng(opset)
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    w = rng.standard_normal((1, 3, 1, 1)).astype(np.float32)  # C2 = C, K = 1: one of each
    c = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    vg = build_vjp(_fully_dynamic_mul(opset), ["y"], ["x", "w"])
    gx, gw = session(vg.proto).run(
        [vg.grad_outputs["x"], vg.grad_outputs["w"]], {"x": x, "w": w, vg.seed_inputs["y"]: c}
    )
    np.testing.assert_allclose(gx, c * w * (x > 0), rtol=1e-6, atol=1e-6)
    ref_w = (c * np.maximum(x, 0)).sum(axis=(0, 2, 3), keepdims=True)
    np.testing.assert_allclose(gw, ref_w, rtol=1e-5, atol=1e-5)
    # the same graph at another broadcast: K = W, C2 = 1
    w2 = rng.standard_normal((1, 1, 1, 5)).astype(np.float32)
    gx2, gw2 = session(vg.proto).run(
        [vg.grad_outputs["x"], vg.grad_outputs["w"]], {"x": x, "w": w2, vg.seed_inputs["y"]: c}
    )
    np.testing.assert_allclose(gx2, c * w2 * (x > 0), rtol=1e-6, atol=1e-6)
    ref_w2 = (c * np.maximum(x, 0)).sum(axis=(0, 1, 2), keepdims=True)
    np.testing.assert_allclose(gw2, ref_w2, rtol=1e-5, atol=1e-5)


def test_run_time_unbroadcast_before_opset10_says_what_to_do():
    from onnxlens.errors import UnsupportedOperatorError

    with pytest.raises(UnsupportedOperatorError, match="input_shape="):
        build_vjp(_fully_dynamic_mul(9), ["y"], ["x", "w"])


@pytest.mark.parametrize("opset", [7, 8])
def test_zero_gradient_before_constant_of_shape(opset):
    """A wrt tensor no seed depends on gets zeros of its shape (a Tile before opset 9)."""
    m = at_opset(tiny_cnn(), opset)
    vg = build_vjp(m, ["relu_out"], ["x", "gap_out"])
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    c = np.random.default_rng(1).standard_normal((2, 4, 8, 8)).astype(np.float32)
    gx, gz = session(vg.proto).run(
        [vg.grad_outputs["x"], vg.grad_outputs["gap_out"]], {"x": x, vg.seed_inputs["relu_out"]: c}
    )
    assert gz.shape == (2, 4, 1, 1) and not gz.any()
    ref = _grad(at_opset(tiny_cnn(), 17), x, c, out="relu_out")
    np.testing.assert_allclose(gx, ref, rtol=1e-5, atol=1e-6)
