"""graph.inputs: the runtime inputs of a model, their image layout, batch, size and channels."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxlens.graph.inputs import InputInfo, input_infos
from synthetic import IR_VERSION, tiny_cnn


def _one_input_model(
    shape: Sequence[int | str] | None, elem: int = TensorProto.FLOAT
) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "inp",
        [helper.make_tensor_value_info("x", elem, shape)],
        [helper.make_tensor_value_info("y", elem, shape)],
    )
    return helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=IR_VERSION
    )


@pytest.mark.parametrize(
    ("shape", "layout", "batch", "size", "channels"),
    [
        (["N", 3, 224, 224], "NCHW", None, (224, 224), 3),
        ([1, 3, 224, 160], "NCHW", 1, (224, 160), 3),
        ([8, 1, 28, 28], "NCHW", 8, (28, 28), 1),
        (["batch", 4, 32, 48], "NCHW", None, (32, 48), 4),
        (["N", 224, 224, 3], "NHWC", None, (224, 224), 3),
        ([2, 28, 28, 1], "NHWC", 2, (28, 28), 1),
        (["N", "H", "W", 3], "NHWC", None, None, 3),
        (["N", 3, "H", "W"], "NCHW", None, None, 3),
        # Neither dim 1 nor dim 3 names an image channel count: NCHW, the ONNX convention.
        (["N", 16, 7, 7], "NCHW", None, (7, 7), 16),
        (["N", "C", "H", "W"], "NCHW", None, None, None),
        # A 3-channel dim 1 wins over dim 3 (channels-first exporters are the common case).
        (["N", 3, 5, 3], "NCHW", None, (5, 3), 3),
        (["N", 3, 32], "other", None, None, None),
        (["N", 1000], "other", None, None, None),
        ([0, 3, 8, 8], "NCHW", None, (8, 8), 3),  # a zero batch is not a static batch
    ],
)
def test_layout_batch_size_and_channels(
    shape: list, layout: str, batch: int | None, size: tuple | None, channels: int | None
) -> None:
    (info,) = input_infos(_one_input_model(shape))
    assert info.name == "x"
    assert info.layout == layout
    assert info.batch == batch
    assert info.size == size
    assert info.channels == channels
    assert info.shape == tuple(shape)


def test_unknown_rank_is_other() -> None:
    (info,) = input_infos(_one_input_model(None))
    assert info.shape is None
    assert (info.layout, info.batch, info.size, info.channels) == ("other", None, None, None)


@pytest.mark.parametrize(
    ("elem", "dtype"),
    [
        (TensorProto.FLOAT, np.float32),
        (TensorProto.UINT8, np.uint8),
        (TensorProto.FLOAT16, np.float16),
        (TensorProto.INT64, np.int64),
    ],
)
def test_dtype(elem: int, dtype: type) -> None:
    (info,) = input_infos(_one_input_model(["N", 3, 8, 8], elem))
    assert info.dtype == np.dtype(dtype)


def test_synthetic_nchw_and_nhwc_models() -> None:
    (nchw,) = input_infos(tiny_cnn(batch="N", layout="NCHW", size=8))
    (nhwc,) = input_infos(tiny_cnn(batch=2, layout="NHWC", size=6))
    assert nchw == InputInfo("x", ("N", 3, 8, 8), np.dtype(np.float32), "NCHW")
    assert nhwc == InputInfo("x", (2, 6, 6, 3), np.dtype(np.float32), "NHWC")
    assert (nhwc.batch, nhwc.size, nhwc.channels) == (2, (6, 6), 3)


def test_ir3_initializers_listed_as_inputs_are_skipped() -> None:
    """IR < 4 requires every initializer to appear among the graph inputs too; those are weights,
    not runtime inputs, whatever their position."""
    w = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "conv.w")
    b = numpy_helper.from_array(np.zeros(4, np.float32), "conv.b")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "conv.w", "conv.b"], ["y"])],
        "ir3",
        [
            helper.make_tensor_value_info("conv.w", TensorProto.FLOAT, [4, 3, 3, 3]),
            helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 16, 16]),
            helper.make_tensor_value_info("conv.b", TensorProto.FLOAT, [4]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 14, 14])],
        initializer=[w, b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 8)], ir_version=3)
    onnx.checker.check_model(model)
    infos = input_infos(model)
    assert [i.name for i in infos] == ["image"]
    assert (infos[0].layout, infos[0].batch, infos[0].size) == ("NCHW", 1, (16, 16))


def test_several_runtime_inputs_in_graph_order() -> None:
    graph = helper.make_graph(
        [helper.make_node("Mul", ["image", "mask"], ["y"])],
        "two",
        [
            helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 224, 224, 3]),
            helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["N", 224, 224, 1]),
            helper.make_tensor_value_info("scale", TensorProto.FLOAT, [1]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=IR_VERSION
    )
    infos = input_infos(model)
    assert [(i.name, i.layout, i.channels) for i in infos] == [
        ("image", "NHWC", 3),
        ("mask", "NHWC", 1),
        ("scale", "other", None),
    ]
