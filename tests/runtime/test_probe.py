"""runtime.probe.probe_missing_shapes on graphs whose Reshape targets are computed at run time
(the Paddle pattern), checked against the shapes ONNX Runtime produces."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxlens.graph import add_outputs
from onnxlens.graph.layers import value_dims
from onnxlens.graph.shapes import infer_shapes
from onnxlens.runtime.probe import probe_missing_shapes
from synthetic import IR_VERSION


def _shaped(model: onnx.ModelProto) -> dict[str, tuple | None]:
    """value_info entries that carry a shape (the last entry of a name wins, as value_infos)."""
    return {
        v.name: value_dims(v)
        for v in model.graph.value_info
        if v.type.tensor_type.HasField("shape")
    }


def _runtime_reshape_model(
    x_shape: list[int | str], head_axes: bool = True, extra: bool = False
) -> onnx.ModelProto:
    """Reshape(x, Concat(Slice(Shape(x), 0, end), [-1])) where `end` = 2 goes through
    Cast -> Sqrt -> Ceil -> Cast, which shape inference cannot evaluate: the target's length, and
    so the rank of the Reshape output "y" and of Relu(y) = "z", stay unknown statically. With
    `head_axes=False` the target is [dim 1 of x, -1] instead, so the batch moves into dim 1."""
    inits = {
        "zero": np.array([0], np.int64),
        "one": np.array([1], np.int64),
        "minus1": np.array([-1], np.int64),
    }
    nodes = [helper.make_node("Shape", ["x"], ["s"])]
    if head_axes:
        nodes += [
            helper.make_node("Gather", ["s", "one"], ["c"], axis=0),  # [3]
            helper.make_node("Cast", ["c"], ["cf"], to=TensorProto.FLOAT),
            helper.make_node("Sqrt", ["cf"], ["cr"]),
            helper.make_node("Ceil", ["cr"], ["cc"]),
            helper.make_node("Cast", ["cc"], ["end"], to=TensorProto.INT64),  # [2]
            helper.make_node("Slice", ["s", "zero", "end"], ["lead"]),  # [N, 3]
        ]
    else:
        nodes += [
            helper.make_node("Gather", ["s", "one"], ["c"], axis=0),
            helper.make_node("Cast", ["c"], ["cf"], to=TensorProto.FLOAT),
            helper.make_node("Sqrt", ["cf"], ["cr"]),
            helper.make_node("Ceil", ["cr"], ["cc"]),
            helper.make_node("Cast", ["cc"], ["end"], to=TensorProto.INT64),  # [2]
            helper.make_node("Slice", ["s", "one", "end"], ["lead"]),  # [3]
        ]
    nodes += [
        helper.make_node("Concat", ["lead", "minus1"], ["t"], axis=0),
        helper.make_node("Reshape", ["x", "t"], ["y"]),
        helper.make_node("Relu", ["y"], ["z"]),
        helper.make_node("ReduceSum", ["z"], ["out"], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "runtime_reshape",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [])],
        initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    return helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=IR_VERSION
    )


def _actual(model: onnx.ModelProto, names: list[str], x: np.ndarray) -> dict[str, tuple]:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(
        add_outputs(model, names).SerializeToString(), opts, providers=["CPUExecutionProvider"]
    )
    return {n: o.shape for n, o in zip(names, sess.run(names, {"x": x}), strict=True)}


def test_static_inference_misses_the_runtime_reshape() -> None:
    """The premise of the other tests: without the probe, "y" and "z" have no shape."""
    inferred = infer_shapes(_runtime_reshape_model(["N", 3, 4, 5]))
    shaped = _shaped(inferred)
    assert "s" in shaped  # inference ran
    assert "y" not in shaped and "z" not in shaped


@pytest.mark.parametrize("batch", [1, 3])
def test_probe_fills_the_shape_with_a_symbolic_batch(batch: int) -> None:
    model = infer_shapes(_runtime_reshape_model(["N", 3, 4, 5]))
    probed = _shaped(probe_missing_shapes(model))
    assert probed["y"] == probed["z"] == ("batch", 3, 20)
    x = np.random.default_rng(batch).standard_normal((batch, 3, 4, 5)).astype(np.float32)
    actual = _actual(model, ["y", "z"], x)
    assert actual["y"] == actual["z"] == (batch, 3, 20)
    # The dtype comes from the run too.
    vi = next(
        v for v in model.graph.value_info if v.name == "y" and v.type.tensor_type.HasField("shape")
    )
    assert vi.type.tensor_type.elem_type == TensorProto.FLOAT


def test_probe_makes_dims_that_scale_with_the_batch_symbolic() -> None:
    """Target [3, -1]: dim 1 is 20 * batch. It must not be recorded as a static size."""
    model = infer_shapes(_runtime_reshape_model(["N", 3, 4, 5], head_axes=False))
    dims = _shaped(probe_missing_shapes(model))["y"]
    assert dims is not None and len(dims) == 2
    assert dims[0] == 3
    assert isinstance(dims[1], str)
    x = np.zeros((4, 3, 4, 5), np.float32)
    assert _actual(model, ["y"], x)["y"] == (3, 80)


def test_probe_fills_shapes_of_a_static_batch_model() -> None:
    model = infer_shapes(_runtime_reshape_model([2, 3, 4, 5]))
    assert "y" not in _shaped(model)
    dims = _shaped(probe_missing_shapes(model)).get("y")
    assert dims is not None
    assert dims[1:] == (3, 20)


def test_probe_needs_static_non_batch_dims() -> None:
    """With a dynamic height there is nothing to feed the probe: the model is left as it was."""
    model = infer_shapes(_runtime_reshape_model(["N", 3, "H", 5]))
    before = model.SerializeToString()
    after = probe_missing_shapes(model)
    assert after.SerializeToString() == before
    assert "y" not in _shaped(after)


def test_probe_leaves_a_fully_inferred_model_alone() -> None:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Neg", ["r"], ["y"])],
        "plain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
    )
    model = infer_shapes(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=IR_VERSION)
    )
    before = model.SerializeToString()
    assert probe_missing_shapes(model).SerializeToString() == before
