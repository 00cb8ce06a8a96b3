"""graph.patterns.gap_classifier_weights: the classifier after global average pooling, on small
hand-built graphs (each pattern and each near miss) and on PyTorch exports, against the torch
module's own weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxlens.graph.patterns import constant_value, gap_classifier_weights
from synthetic import IR_VERSION

C, K = 4, 3
RNG = np.random.default_rng(0)
W_KC = RNG.standard_normal((K, C)).astype(np.float32)  # (classes, channels): PyTorch's layout
BIAS = RNG.standard_normal(K).astype(np.float32)


def _graph(
    nodes: list[onnx.NodeProto],
    inits: dict[str, np.ndarray],
    opset: int = 17,
    x_shape: tuple[int, ...] = (1, C, 5, 5),
) -> onnx.ModelProto:
    """x (the feature map) -> Relu = "feat" -> `nodes` -> "y"."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["feat"]), *nodes],
        "pattern",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "K"])],
        initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=IR_VERSION
    )
    onnx.checker.check_model(model)
    return model


def _gemm(a: str, trans_b: int = 1, **attrs: float) -> onnx.NodeProto:
    return helper.make_node("Gemm", [a, "w", "b"], ["y"], transB=trans_b, **attrs)


def _weights(trans_b: int) -> dict[str, np.ndarray]:
    return {"w": W_KC if trans_b else np.ascontiguousarray(W_KC.T), "b": BIAS}


def _gap_flatten(trans_b: int = 1) -> onnx.ModelProto:
    nodes = [
        helper.make_node("GlobalAveragePool", ["feat"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        _gemm("f", trans_b),
    ]
    return _graph(nodes, _weights(trans_b))


def _gap_reshape_identity() -> onnx.ModelProto:
    nodes = [
        helper.make_node("Identity", ["feat"], ["i0"]),
        helper.make_node("GlobalAveragePool", ["i0"], ["p"]),
        helper.make_node("Reshape", ["p", "shape"], ["r"]),
        helper.make_node("Identity", ["r"], ["i1"]),
        _gemm("i1", trans_b=0),
    ]
    return _graph(nodes, {**_weights(0), "shape": np.array([-1, C], np.int64)})


def _reduce_mean_attr_matmul() -> onnx.ModelProto:
    """opset 13: axes as an attribute, keepdims=0 -> (N, C), MatMul with (C, K) + Add bias."""
    nodes = [
        helper.make_node("ReduceMean", ["feat"], ["m"], axes=[-2, -1], keepdims=0),
        helper.make_node("MatMul", ["m", "w"], ["mm"]),
        helper.make_node("Add", ["mm", "b"], ["y"]),
    ]
    return _graph(nodes, _weights(0), opset=13)


def _reduce_mean_input_squeeze_constant() -> onnx.ModelProto:
    """opset 18: axes as an input, keepdims=1 then Squeeze; the weight is a Constant node."""
    nodes = [
        helper.make_node("ReduceMean", ["feat", "axes"], ["m"], keepdims=1),
        helper.make_node("Squeeze", ["m", "sq_axes"], ["s"]),
        helper.make_node(
            "Constant", [], ["w"], value=numpy_helper.from_array(np.ascontiguousarray(W_KC.T))
        ),
        helper.make_node("MatMul", ["s", "w"], ["y"]),
    ]
    inits = {"axes": np.array([2, 3], np.int64), "sq_axes": np.array([2, 3], np.int64)}
    return _graph(nodes, inits, opset=18)


def _keras_nhwc() -> onnx.ModelProto:
    """tf2onnx's GlobalAveragePooling2D on NHWC: ReduceMean over axes (1, 2) -> MatMul."""
    nodes = [
        helper.make_node("ReduceMean", ["feat"], ["m"], axes=[1, 2], keepdims=0),
        helper.make_node("MatMul", ["m", "w"], ["y"]),
    ]
    return _graph(nodes, {"w": np.ascontiguousarray(W_KC.T)}, opset=13, x_shape=(1, 5, 5, C))


def _gap_gemm_alpha() -> onnx.ModelProto:
    nodes = [
        helper.make_node("GlobalAveragePool", ["feat"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        _gemm("f", 1, alpha=0.5),
    ]
    return _graph(nodes, _weights(1))


def _gap_view_shape() -> onnx.ModelProto:
    """x.view(x.size(0), -1): the pooled tensor also feeds a Shape node (its shape, not values)."""
    nodes = [
        helper.make_node("GlobalAveragePool", ["feat"], ["p"]),
        helper.make_node("Shape", ["p"], ["shp"]),
        helper.make_node("Gather", ["shp", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "zero_axes"], ["n1"]),
        helper.make_node("Concat", ["n1", "minus_one"], ["target_shape"], axis=0),
        helper.make_node("Reshape", ["p", "target_shape"], ["r"]),
        _gemm("r"),
    ]
    inits = {
        **_weights(1),
        "zero": np.array(0, np.int64),
        "zero_axes": np.array([0], np.int64),
        "minus_one": np.array([-1], np.int64),
    }
    return _graph(nodes, inits)


@pytest.mark.parametrize(
    ("build", "scale"),
    [
        (lambda: _gap_flatten(1), 1.0),
        (lambda: _gap_flatten(0), 1.0),
        (_gap_reshape_identity, 1.0),
        (_reduce_mean_attr_matmul, 1.0),
        (_reduce_mean_input_squeeze_constant, 1.0),
        (_keras_nhwc, 1.0),
        (_gap_gemm_alpha, 0.5),
        (_gap_view_shape, 1.0),
    ],
    ids=[
        "gap-flatten-gemm-transB",
        "gap-flatten-gemm",
        "identity-gap-reshape-gemm",
        "reducemean-attr-matmul",
        "reducemean-input-squeeze-constant-matmul",
        "keras-nhwc-reducemean-matmul",
        "gemm-alpha",
        "view-with-shape-consumer",
    ],
)
def test_patterns_return_the_classifier_weights_as_classes_by_channels(build, scale) -> None:
    w = gap_classifier_weights(build(), "feat")
    assert w is not None and w.dtype == np.float32 and w.shape == (K, C)
    np.testing.assert_array_equal(w, W_KC * np.float32(scale))


def test_weights_equal_the_linear_map_from_pooled_features_to_scores() -> None:
    """Independent of any layout convention: y - bias = pooled @ w.T, evaluated by ORT."""
    import onnxruntime as ort

    x = np.random.default_rng(1).standard_normal((2, C, 5, 5)).astype(np.float32)
    for model in (_gap_flatten(0), _reduce_mean_attr_matmul(), _gap_reshape_identity()):
        model = onnx.ModelProto.FromString(model.SerializeToString())
        model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        y = sess.run(None, {"x": x})[0]
        w = gap_classifier_weights(model, "feat")
        assert w is not None
        pooled = np.maximum(x, 0).mean(axis=(2, 3))
        np.testing.assert_allclose(y - BIAS, pooled @ w.T, rtol=1e-5, atol=1e-5)


def _near_misses() -> dict[str, onnx.ModelProto]:
    gemm = _gemm("f")
    w = _weights(1)
    return {
        "max-pool": _graph(
            [
                helper.make_node("GlobalMaxPool", ["feat"], ["p"]),
                helper.make_node("Flatten", ["p"], ["f"]),
                gemm,
            ],
            w,
        ),
        "no-pooling": _graph([helper.make_node("Flatten", ["feat"], ["f"]), gemm], w),
        "reshape-before-pooling": _graph(
            [
                helper.make_node("Reshape", ["feat", "shape"], ["r"]),
                helper.make_node("GlobalAveragePool", ["r"], ["p"]),
                helper.make_node("Flatten", ["p"], ["f"]),
                gemm,
            ],
            {**w, "shape": np.array([1, C, 25, 1], np.int64)},
        ),
        "channel-mean": _graph(
            [
                helper.make_node("ReduceMean", ["feat"], ["m"], axes=[1], keepdims=0),
                helper.make_node("Flatten", ["m"], ["f"]),
                gemm,
            ],
            {"w": RNG.standard_normal((K, 25)).astype(np.float32), "b": BIAS},
            opset=13,
        ),
        "mean-of-everything": _graph(
            [
                helper.make_node("ReduceMean", ["feat"], ["m"], keepdims=0),
                helper.make_node("Reshape", ["m", "shape"], ["f"]),
                gemm,
            ],
            {**w, "shape": np.array([1, 1], np.int64)},
            opset=13,
        ),
        "relu-after-pooling": _graph(
            [
                helper.make_node("GlobalAveragePool", ["feat"], ["p"]),
                helper.make_node("Relu", ["p"], ["q"]),
                helper.make_node("Flatten", ["q"], ["f"]),
                gemm,
            ],
            w,
        ),
        "pooled-tensor-used-twice": _graph(
            [
                helper.make_node("GlobalAveragePool", ["feat"], ["p"]),
                helper.make_node("Flatten", ["p"], ["f"]),
                helper.make_node("Flatten", ["p"], ["f2"]),
                gemm,
                helper.make_node("Identity", ["f2"], ["unused"]),
            ],
            w,
        ),
        "transA": _graph(
            [
                helper.make_node("GlobalAveragePool", ["feat"], ["p"]),
                helper.make_node("Flatten", ["p"], ["f"]),
                helper.make_node("Gemm", ["f", "w", "b"], ["y"], transA=1, transB=1),
            ],
            w,
        ),
        "features-as-second-matmul-input": _graph(
            [
                helper.make_node("ReduceMean", ["feat"], ["m"], axes=[2, 3], keepdims=0),
                helper.make_node("MatMul", ["w", "m"], ["y"]),
            ],
            {"w": RNG.standard_normal((C, C)).astype(np.float32)},
            opset=13,
        ),
    }


@pytest.mark.parametrize("case", list(_near_misses()))
def test_near_misses_are_not_matched(case: str) -> None:
    assert gap_classifier_weights(_near_misses()[case], "feat") is None


def test_weights_computed_at_run_time_are_not_matched() -> None:
    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["x"], ["feat"]),
            helper.make_node("GlobalAveragePool", ["feat"], ["p"]),
            helper.make_node("Flatten", ["p"], ["f"]),
            helper.make_node("Gemm", ["f", "w_in"], ["y"], transB=1),
        ],
        "runtime-weights",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, C, 5, 5]),
            helper.make_tensor_value_info("w_in", TensorProto.FLOAT, [K, C]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, K])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert gap_classifier_weights(model, "feat") is None
    assert constant_value(model, "w_in") is None


def test_pattern_matching_does_not_change_the_graph() -> None:
    model = _reduce_mean_input_squeeze_constant()
    before = model.SerializeToString()
    gap_classifier_weights(model, "feat")
    assert model.SerializeToString() == before


# -- PyTorch exports -----------------------------------------------------------------------------

torch = pytest.importorskip("torch", reason="the export tests need torch (onnxlens[test])")
nn = torch.nn


class _Head(nn.Module):
    """conv -> ReLU -> one of PyTorch's ways to write global average pooling -> Linear."""

    def __init__(self, pooling: str, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, 5)
        self.pooling = pooling

    def forward(self, x):
        f = torch.relu(self.conv(x))
        if self.pooling == "adaptive-flatten":
            p = torch.flatten(nn.functional.adaptive_avg_pool2d(f, 1), 1)
        elif self.pooling == "adaptive-view":
            a = nn.functional.adaptive_avg_pool2d(f, 1)
            p = a.view(a.size(0), -1)
        elif self.pooling == "mean":
            p = f.mean((2, 3))
        elif self.pooling == "max":
            p = torch.flatten(nn.functional.adaptive_max_pool2d(f, 1), 1)
        else:
            raise ValueError(self.pooling)
        return self.fc(p)


def _export(net, path: Path, size: int, opset: int) -> onnx.ModelProto:
    import warnings

    from zoo import export

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export(net.eval(), path, size=(size, size), opset=opset)
    return onnx.load(str(path))


def _relu_output(model: onnx.ModelProto) -> str:
    return next(n.output[0] for n in model.graph.node if n.op_type == "Relu")


@pytest.mark.parametrize("opset", [17, 18])
@pytest.mark.parametrize("pooling", ["adaptive-flatten", "adaptive-view", "mean"])
def test_torch_heads_give_the_linear_layer_weights(tmp_path, pooling: str, opset: int) -> None:
    net = _Head(pooling)
    model = _export(net, tmp_path / "head.onnx", 12, opset)
    w = gap_classifier_weights(model, _relu_output(model))
    assert w is not None
    np.testing.assert_array_equal(w, net.fc.weight.detach().numpy())


def test_torch_global_max_pooling_is_not_matched(tmp_path) -> None:
    model = _export(_Head("max"), tmp_path / "max.onnx", 12, 17)
    assert gap_classifier_weights(model, _relu_output(model)) is None


def test_torch_resnet18_fc_weights(tmp_path) -> None:
    from zoo import randomize, resnet18

    torch.manual_seed(0)
    net = randomize(resnet18(), seed=0)
    model = _export(net, tmp_path / "r18.onnx", 64, 17)
    last = "/layer4/layer4.1/Relu_1_output_0"
    w = gap_classifier_weights(model, last)
    assert w is not None and w.shape == (1000, 512)
    np.testing.assert_array_equal(w, net.fc.weight.detach().numpy())
    # Inside the last block (before its second conv), the graph after the tensor is no classifier.
    assert gap_classifier_weights(model, "/layer4/layer4.1/Relu_output_0") is None
