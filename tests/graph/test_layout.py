"""Per-tensor layout inference (graph.layout): NHWC and NCHW tensors in one model."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxlens
from onnxlens.graph.layout import channel_axis, tensor_layouts, to_nchw_perm
from synthetic import IR_VERSION, tiny_cnn


def _keras_style(h: int = 6, w: int = 10, c: int = 4, cin: int = 3) -> onnx.ModelProto:
    """What Keras' torch-backend export writes per Conv2D: Transpose to NCHW, Conv, Transpose
    back, bias Add, Cast copy, Relu (NHWC), then MaxPool behind another Transpose."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((c, cin, 3, 3)).astype("f"), "w"),
        numpy_helper.from_array(rng.standard_normal(c).astype("f"), "b"),
    ]
    nodes = [
        helper.make_node("Transpose", ["x"], ["t0"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["t0", "w"], ["conv"], pads=[1, 1, 1, 1]),
        helper.make_node("Transpose", ["conv"], ["t1"], perm=[0, 2, 3, 1]),
        helper.make_node("Add", ["t1", "b"], ["biased"]),
        helper.make_node("Cast", ["biased"], ["copy"], to=TensorProto.FLOAT),
        helper.make_node("Relu", ["copy"], ["relu"]),
        helper.make_node("Transpose", ["relu"], ["t2"], perm=[0, 3, 1, 2]),
        helper.make_node("MaxPool", ["t2"], ["pool"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Transpose", ["pool"], ["pooled"], perm=[0, 2, 3, 1]),
        helper.make_node("ReduceMean", ["pooled"], ["gap"], axes=[1, 2], keepdims=0),
    ]
    g = helper.make_graph(
        nodes,
        "keras_style",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", h, w, cin])],
        [helper.make_tensor_value_info("gap", TensorProto.FLOAT, ["N", c])],
        initializer=inits,
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=IR_VERSION)
    return onnx.shape_inference.infer_shapes(m)


def test_layouts_follow_transposes_and_nchw_ops():
    lay = tensor_layouts(_keras_style())
    assert lay["x"] == "NHWC" and lay["t0"] == "NCHW" and lay["conv"] == "NCHW"
    assert lay["t1"] == lay["biased"] == lay["copy"] == lay["relu"] == "NHWC"
    assert lay["pool"] == "NCHW" and lay["pooled"] == "NHWC"
    assert "gap" not in lay  # rank 2: no image layout


def test_operator_layout_overrides_a_guessed_input_layout():
    """An NCHW input whose last dim is 3 looks NHWC; the Conv reading it says otherwise."""
    rng = np.random.default_rng(1)
    g = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 5, 7, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(rng.standard_normal((2, 5, 1, 1)).astype("f"), "w")],
    )
    m = onnx.shape_inference.infer_shapes(
        helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=IR_VERSION)
    )
    assert tensor_layouts(m, {"x": "NHWC"})["x"] == "NCHW"


def test_layout_is_inferred_backwards_through_elementwise_ops():
    """A tensor known only from a later consumer (Identity before a Conv) gets its layout."""
    rng = np.random.default_rng(2)
    g = helper.make_graph(
        [
            helper.make_node("Relu", ["x"], ["r"]),
            helper.make_node("Identity", ["r"], ["i"]),
            helper.make_node("Conv", ["i", "w"], ["y"]),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 9, 9])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(rng.standard_normal((2, 3, 1, 1)).astype("f"), "w")],
    )
    m = onnx.shape_inference.infer_shapes(
        helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=IR_VERSION)
    )
    lay = tensor_layouts(m, {})
    assert lay["i"] == lay["r"] == lay["x"] == "NCHW"


@pytest.mark.parametrize("layout", ["NCHW", "NHWC", "HWNC", "NWHC"])
def test_to_nchw_perm_and_channel_axis(layout):
    a = np.arange(2 * 3 * 5 * 7).reshape(2, 3, 5, 7)  # (N, C, H, W)
    stored = a.transpose(["NCHW".index(c) for c in layout])
    np.testing.assert_array_equal(stored.transpose(to_nchw_perm(layout)), a)
    assert stored.shape[channel_axis(layout)] == 3


def test_spatial_layers_and_cam_maps_of_a_mixed_layout_model():
    """Before: every rank-4 tensor of an NHWC model was read as NHWC when square and as NCHW
    when not, so on a 6x10 input the NHWC ReLU (N, 6, 10, 4) became 6 maps of 10x4."""
    from onnxlens.methods.layers import default_layer, to_maps

    model = onnxlens.Model(_keras_style(), device="cpu")
    by = {la.name: la for la in model.layers}
    assert by["relu"].spatial and by["conv"].spatial and by["pooled"].spatial
    assert default_layer(model) == "relu"  # walked back from the pooled copy to the ReLU
    x = np.random.default_rng(3).standard_normal((2, 6, 10, 3)).astype(np.float32)
    acts = model.activations(x, ["relu", "conv"])
    ref = np.maximum(acts["conv"] + model.weights("b")[None, :, None, None], 0)  # NCHW
    np.testing.assert_allclose(to_maps(acts["relu"], model, tensor="relu"), ref, atol=1e-6)
    np.testing.assert_array_equal(to_maps(acts["conv"], model, tensor="conv"), acts["conv"])


def test_nhwc_tiny_cnn_keeps_working():
    from onnxlens.methods.layers import layer_layout

    model = onnxlens.Model(tiny_cnn(layout="NHWC"), device="cpu")
    assert layer_layout(model, "x") == "NHWC"  # the input: its detected layout
    assert layer_layout(model, "relu_out") == "NCHW"
