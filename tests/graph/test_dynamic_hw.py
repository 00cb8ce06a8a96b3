"""Models with dynamic height/width: with a size (the CLI's --size, a preprocess size, or an
array's shape) the layers get their shapes at that size, so spatial layers and the default CAM
layer are found. References: the activations plain ONNX Runtime computes at that size, and the
same model exported with that size fixed in its input."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from onnxlens import Model
from onnxlens.methods.layers import default_layer
from synthetic import tiny_cnn

SIZE = (48, 192)


def _dynamic_tiny() -> onnx.ModelProto:
    m = tiny_cnn()
    for d in m.graph.input[0].type.tensor_type.shape.dim[2:]:
        d.Clear()
        d.dim_param = "?"
    return m


def _static_copy(proto: onnx.ModelProto, size: tuple[int, int]) -> onnx.ModelProto:
    """The same model with its input's H and W written into the file."""
    m = onnx.ModelProto()
    m.CopyFrom(proto)
    dims = m.graph.input[0].type.tensor_type.shape.dim
    for d, v in zip(dims[2:], size, strict=True):
        d.Clear()
        d.dim_value = v
    del m.graph.value_info[:]
    return m


def _ort_shapes(proto: onnx.ModelProto, names: list[str], x: np.ndarray) -> dict[str, tuple]:
    m = onnx.ModelProto()
    m.CopyFrom(proto)
    for n in names:
        m.graph.output.append(onnx.ValueInfoProto(name=n))
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    outs = sess.run(names, {m.graph.input[0].name: x})
    return {n: o.shape for n, o in zip(names, outs, strict=True)}


def test_tiny_dynamic_hw_layers_at_a_given_size():
    proto = _dynamic_tiny()
    plain = Model(proto, device="cpu", threads=1)
    assert not any(la.spatial for la in plain.layers)
    sized = Model(proto, device="cpu", threads=1, preprocess={"size": (10, 12)})
    spatial = {la.name: la.shape for la in sized.layers if la.spatial}
    x = np.zeros((1, 3, 10, 12), np.float32)
    ref = _ort_shapes(proto, list(spatial), x)
    assert set(spatial) == {"conv_out", "relu_out", "pool_out"}
    for name, shape in spatial.items():
        assert tuple(shape[1:]) == ref[name][1:]
    # the array's shape gives the same layers, without a preprocess size
    by_array = {la.name: la.shape for la in plain.layers_for(x.shape) if la.spatial}
    assert by_array == spatial
    assert default_layer(sized) == default_layer(Model(_static_copy(proto, (10, 12))))


@pytest.mark.slow
def test_paddle_classifier_with_dynamic_hw_finds_its_spatial_layers(ppocr_cls_path):
    """PaddleOCR's direction classifier: input (-1, 3, ?, ?). Without a size no layer is spatial
    (today's "no spatial layer"); with one they are, with the shapes ORT computes, and the
    default CAM layer and its Grad-CAM equal those of the same model with the size fixed."""
    from onnxlens.methods import GradCAM

    proto = onnx.load(str(ppocr_cls_path))
    assert not any(la.spatial for la in Model(proto, device="cpu", threads=1).layers)
    model = Model(proto, device="cpu", threads=1, preprocess={"size": SIZE})
    static = Model(_static_copy(proto, SIZE), device="cpu", threads=1)
    spatial = [la for la in model.layers if la.spatial]
    assert spatial and [la.name for la in spatial] == [
        la.name for la in static.layers if la.spatial
    ]
    x = np.random.default_rng(0).standard_normal((2, 3, *SIZE)).astype(np.float32)
    ref = _ort_shapes(proto, [la.name for la in spatial[-3:]], x)
    for la in spatial[-3:]:
        assert tuple(la.shape[1:]) == ref[la.name][1:]
    layer = default_layer(model)
    assert layer == default_layer(static)
    exp, ref_exp = GradCAM(model).attribute(x, 1), GradCAM(static).attribute(x, 1)
    assert exp.layers == ref_exp.layers == [layer]
    np.testing.assert_allclose(exp.raw, ref_exp.raw, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(exp.heatmap, ref_exp.heatmap, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_paddle_classifier_default_layer_from_the_array_shape(ppocr_cls_path):
    """No size given at all: the array's H and W find the spatial layers, and Grad-CAM picks the
    same layer, with the same maps, as the model with that size fixed."""
    from onnxlens.methods import GradCAM

    proto = onnx.load(str(ppocr_cls_path))
    model = Model(proto, device="cpu", threads=1)  # no preprocess size
    static = Model(_static_copy(proto, SIZE), device="cpu", threads=1)
    x = np.random.default_rng(1).standard_normal((2, 3, *SIZE)).astype(np.float32)
    assert default_layer(model, input_shape=x.shape) == default_layer(static)
    exp, ref_exp = GradCAM(model).attribute(x, 1), GradCAM(static).attribute(x, 1)
    assert exp.layers == ref_exp.layers
    np.testing.assert_allclose(exp.heatmap, ref_exp.heatmap, rtol=1e-4, atol=1e-5)
