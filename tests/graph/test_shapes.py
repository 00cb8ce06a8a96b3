"""graph.shapes: pin_input_shape and infer_shapes, checked against the shapes ONNX Runtime
actually produces for every intermediate tensor."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxlens.errors import ShapeError
from onnxlens.graph import add_outputs
from onnxlens.graph.layers import value_dims, value_infos
from onnxlens.graph.shapes import infer_shapes, pin_input_shape
from synthetic import IR_VERSION, tiny_cnn


def _dims(vi: onnx.ValueInfoProto) -> tuple:
    return value_dims(vi) or ()


def _actual_shapes(model: onnx.ModelProto, x: np.ndarray) -> dict[str, tuple[int, ...]]:
    """Every node output's shape as ORT computes it on `x`."""
    names = [o for n in model.graph.node for o in n.output if o]
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(
        add_outputs(model, names).SerializeToString(), opts, providers=["CPUExecutionProvider"]
    )
    inp = sess.get_inputs()[0].name
    return {n: o.shape for n, o in zip(names, sess.run(names, {inp: x}), strict=True)}


def _dynamic_size_cnn() -> onnx.ModelProto:
    """tiny_cnn with symbolic batch, height and width."""
    m = tiny_cnn()
    dims = m.graph.input[0].type.tensor_type.shape.dim
    dims[2].Clear()
    dims[2].dim_param = "H"
    dims[3].Clear()
    dims[3].dim_param = "W"
    return m


def test_pin_input_shape_sets_the_non_batch_dims() -> None:
    model = _dynamic_size_cnn()
    pinned = pin_input_shape(model, (None, 3, 12, 10))
    assert _dims(pinned.graph.input[0]) == ("N", 3, 12, 10)  # the batch stays as it is


def test_pin_input_shape_keeps_dims_given_as_none() -> None:
    pinned = pin_input_shape(_dynamic_size_cnn(), (7, None, 12, None))
    assert _dims(pinned.graph.input[0]) == ("N", 3, 12, "W")  # dim 0 is never pinned


def test_pin_input_shape_does_not_mutate_its_input() -> None:
    model = _dynamic_size_cnn()
    before = model.SerializeToString()
    pin_input_shape(model, (None, 3, 12, 10))
    assert model.SerializeToString() == before


def test_pin_input_shape_skips_initializers_listed_as_inputs() -> None:
    """IR < 4 lists weights as graph inputs, possibly first; the runtime input is the one pinned."""
    w = numpy_helper.from_array(np.ones((2, 3), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["w", "x"], ["y"])],
        "ir3",
        [
            helper.make_tensor_value_info("w", TensorProto.FLOAT, [2, 3]),
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "K"]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 8)], ir_version=3)
    pinned = pin_input_shape(model, (None, 3, 5))
    assert _dims(pinned.graph.input[0]) == (2, 3)
    assert _dims(pinned.graph.input[1]) == ("N", 3, 5)


@pytest.mark.parametrize("shape", [(None, 3, 8), (None, 3, 8, 8, 1)])
def test_pin_input_shape_refuses_a_wrong_rank(shape: tuple) -> None:
    with pytest.raises(ShapeError, match=r"rank .* input 'x' has rank 4"):
        pin_input_shape(_dynamic_size_cnn(), shape)


def test_pin_input_shape_drops_stale_shapes() -> None:
    """value_info and symbolic output dims from before the pin would contradict what inference
    now finds; they are cleared, static output dims are kept."""
    model = onnx.shape_inference.infer_shapes(_dynamic_size_cnn())
    out = model.graph.output[0].type.tensor_type.shape.dim
    out[1].Clear()
    out[1].dim_param = "classes"
    assert len(model.graph.value_info) > 0
    pinned = pin_input_shape(model, (None, 3, 12, 10))
    assert len(pinned.graph.value_info) == 0
    assert _dims(pinned.graph.output[0]) == (None, None)  # "N" and "classes" were symbolic


def test_infer_shapes_after_pinning_matches_onnx_runtime() -> None:
    model = infer_shapes(pin_input_shape(_dynamic_size_cnn(), (None, 3, 12, 10)))
    x = np.random.default_rng(0).standard_normal((2, 3, 12, 10)).astype(np.float32)
    actual = _actual_shapes(model, x)
    infos = value_infos(model)
    for name, shape in actual.items():
        dims = _dims(infos[name])
        assert len(dims) == len(shape), name
        assert dims[1:] == shape[1:], (name, dims, shape)  # every non-batch dim static and right
        assert not isinstance(dims[0], int), (name, dims)  # the batch stays symbolic
    assert _dims(infos["logits"])[1:] == (5,)


def test_infer_shapes_sees_through_large_weights() -> None:
    """Inference runs on the weightless view (weights over 4 KiB become typed inputs there); the
    shapes of the real model come back all the same, small constants (a Reshape target) included."""
    rng = np.random.default_rng(1)
    w = rng.standard_normal((64, 3, 3, 3)).astype(np.float32)  # 6912 bytes
    assert w.nbytes > 4096
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
            helper.make_node("Reshape", ["c", "target"], ["r"]),
            helper.make_node("ReduceMean", ["r"], ["y"], axes=[2], keepdims=0),
        ],
        "big",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[
            numpy_helper.from_array(w, "w"),
            numpy_helper.from_array(np.array([0, 64, 36], np.int64), "target"),
        ],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=IR_VERSION
    )
    inferred = infer_shapes(model)
    # The weights are still initializers of the result (not turned into inputs).
    assert [v.name for v in inferred.graph.input] == ["x"]
    assert {t.name for t in inferred.graph.initializer} == {"w", "target"}
    x = rng.standard_normal((3, 3, 6, 6)).astype(np.float32)
    actual = _actual_shapes(inferred, x)
    infos = value_infos(inferred)
    assert _dims(infos["c"]) == ("N", 64, 6, 6)
    assert _dims(infos["r"])[1:] == actual["r"][1:] == (64, 36)
    assert _dims(infos["y"])[1:] == actual["y"][1:] == (64,)


def test_infer_shapes_keeps_the_model_when_inference_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Best effort: when onnx's inference raises (a rule gap, an op it cannot type), the model
    comes back as it was and loading goes on."""

    def fail(*args: object, **kwargs: object) -> onnx.ModelProto:
        raise onnx.shape_inference.InferenceError("[ShapeInferenceError] unsupported")

    model = onnx.shape_inference.infer_shapes(tiny_cnn())
    before = model.SerializeToString()
    monkeypatch.setattr(onnx.shape_inference, "infer_shapes", fail)
    assert infer_shapes(model).SerializeToString() == before
