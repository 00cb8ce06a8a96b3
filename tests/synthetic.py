"""Small synthetic models for unit tests (real exported models live in conftest fixtures)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# ORT 1.31 reads IR <= 13 while onnx 1.23 writes 14 by default: synthetic models pin an IR.
IR_VERSION = 10


def tiny_cnn(
    batch: int | str = "N", layout: str = "NCHW", seed: int = 0, size: int = 8
) -> onnx.ModelProto:
    """Conv(3->4, 3x3, pad 1) -> Relu -> MaxPool 2x2 -> GlobalAveragePool -> Flatten -> Gemm(4->5)."""
    rng = np.random.default_rng(seed)
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "conv.w")
    b = numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "conv.b")
    fw = numpy_helper.from_array(rng.standard_normal((5, 4)).astype(np.float32), "fc.w")
    fb = numpy_helper.from_array(rng.standard_normal(5).astype(np.float32), "fc.b")
    nodes = []
    x = "x"
    if layout == "NHWC":
        nodes.append(
            helper.make_node("Transpose", ["x"], ["x_nchw"], perm=[0, 3, 1, 2], name="to_nchw")
        )
        x = "x_nchw"
    nodes += [
        helper.make_node(
            "Conv", [x, "conv.w", "conv.b"], ["conv_out"], pads=[1, 1, 1, 1], name="conv1"
        ),
        helper.make_node("Relu", ["conv_out"], ["relu_out"], name="relu1"),
        helper.make_node(
            "MaxPool", ["relu_out"], ["pool_out"], kernel_shape=[2, 2], strides=[2, 2], name="pool1"
        ),
        helper.make_node("GlobalAveragePool", ["pool_out"], ["gap_out"], name="gap"),
        helper.make_node("Flatten", ["gap_out"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["logits"], transB=1, name="fc"),
    ]
    shape = [batch, 3, size, size] if layout == "NCHW" else [batch, size, size, 3]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 5])],
        initializer=[w, b, fw, fb],
    )
    return helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=IR_VERSION
    )
