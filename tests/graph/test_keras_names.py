"""Framework layer names: Keras' "conv2d_4" finds the tensor its exporter wrote for that layer.

The hand-built graphs copy the node names real exporters write: Keras 3 through TensorFlow
(`model.export(format="onnx")`, tf2onnx inside: every layer scope gets one more "_<n>" than the
layer name, "functional_1/conv2d_4_1/Relu"; the first conv2d's scope is "conv2d_1", which is
not the layer conv2d_1) and Keras 2 through tf2onnx ("model/conv2d_4/Relu"). The last test
exports a real Keras 3 model through TensorFlow when TensorFlow and tf2onnx are installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxlens
from onnxlens.errors import LayerNotFoundError
from onnxlens.graph import list_layers, resolve_tensor
from onnxlens.methods.layers import default_layer
from onnxlens.model import describe

H, W, C = 12, 16, 4


def keras_tf_export(keras3: bool = True) -> onnx.ModelProto:
    """Five conv2d layers (NHWC model, NCHW convs behind a Transpose), max pooling, flatten with
    its shape plumbing, dense + softmax: the structure and names of a real tf2onnx export."""
    rng = np.random.default_rng(0)
    root = "functional_1" if keras3 else "model"

    def scope(layer: str, k: int) -> str:
        return f"{root}/{layer}_{k}" if keras3 else f"{root}/{layer}"

    inits, nodes = [], []
    x = "image"
    t = f"{scope('conv2d', 1)}/convolution__6:0"
    nodes.append(helper.make_node("Transpose", [x], [t], perm=[0, 3, 1, 2], name=t[:-2]))
    x, cin = t, 3
    # Keras layer names conv2d, conv2d_1, ... and their Keras 3 scopes conv2d_1, conv2d_1_2, ...
    keras_names = ["conv2d"] + [f"conv2d_{i}" for i in range(1, 5)]
    scopes = (
        [scope("conv2d", 1), scope("conv2d_1", 2)] + [scope(f"conv2d_{i}", 1) for i in (2, 3, 4)]
        if keras3
        else [scope(n, 0) for n in keras_names]
    )
    for s in scopes:
        w = f"{s}/convolution/ReadVariableOp:0"
        inits.append(numpy_helper.from_array(rng.standard_normal((C, cin, 3, 3)).astype("f"), w))
        nodes.append(
            helper.make_node(
                "Conv", [x, w], [f"{s}/convolution:0"], pads=[1] * 4, name=f"{s}/convolution"
            )
        )
        nodes.append(
            helper.make_node("Relu", [f"{s}/convolution:0"], [f"{s}/Relu:0"], name=f"{s}/Relu")
        )
        x, cin = f"{s}/Relu:0", C
    pool = scope("max_pooling2d", 1)
    nodes.append(
        helper.make_node(
            "MaxPool",
            [x],
            [f"{pool}/MaxPool2d:0"],
            kernel_shape=[2, 2],
            strides=[2, 2],
            name=f"{pool}/MaxPool2d",
        )
    )
    nodes.append(
        helper.make_node(
            "Transpose",
            [f"{pool}/MaxPool2d:0"],
            ["Transpose__44:0"],
            perm=[0, 2, 3, 1],
            name="Transpose__44",
        )
    )
    fl = scope("flatten", 1)
    inits += [
        numpy_helper.from_array(np.array([0], np.int64), "const_zero"),
        numpy_helper.from_array(np.array([-1], np.int64), "const_minus_one"),
    ]
    nodes += [
        helper.make_node("Shape", ["Transpose__44:0"], ["Shape__46:0"], name="Shape__46"),
        helper.make_node(
            "Gather", ["Shape__46:0", "const_zero"], [f"{fl}/Shape:0"], name="Gather__49"
        ),
        helper.make_node(
            "Concat",
            [f"{fl}/Shape:0", "const_minus_one"],
            [f"{fl}/Reshape/shape_Concat__40:0"],
            axis=0,
            name=f"{fl}/Reshape/shape_Concat__40",
        ),
        helper.make_node(
            "Reshape",
            ["Transpose__44:0", f"{fl}/Reshape/shape_Concat__40:0"],
            [f"{fl}/Reshape:0"],
            name=f"{fl}/Reshape",
        ),
    ]
    dense = scope("dense", 1)
    flat = C * (H // 2) * (W // 2)
    inits.append(
        numpy_helper.from_array(
            rng.standard_normal((flat, 5)).astype("f"), f"{dense}/ReadVariableOp:0"
        )
    )
    nodes += [
        helper.make_node(
            "MatMul",
            [f"{fl}/Reshape:0", f"{dense}/ReadVariableOp:0"],
            [f"{dense}/MatMul:0"],
            name=f"{dense}/MatMul",
        ),
        helper.make_node("Softmax", [f"{dense}/MatMul:0"], ["Identity:0"], name=f"{dense}/Softmax"),
    ]
    g = helper.make_graph(
        nodes,
        root,
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["unk__51", H, W, 3])],
        [helper.make_tensor_value_info("Identity:0", TensorProto.FLOAT, ["unk__52", 5])],
        initializer=inits,
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 15)], producer_name="tf2onnx")
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


@pytest.mark.parametrize("keras3", [True, False], ids=["keras3-tf", "keras2-tf2onnx"])
def test_keras_layer_names_resolve_to_the_layer_output(keras3):
    proto = keras_tf_export(keras3)
    root = "functional_1" if keras3 else "model"
    conv4 = f"{root}/conv2d_4_1/Relu:0" if keras3 else f"{root}/conv2d_4/Relu:0"
    assert resolve_tensor(proto, "conv2d_4") == conv4
    # Keras 3: the layer conv2d_1 is scope conv2d_1_2; conv2d (the first) is scope conv2d_1.
    first = f"{root}/conv2d_1/Relu:0" if keras3 else f"{root}/conv2d/Relu:0"
    second = f"{root}/conv2d_1_2/Relu:0" if keras3 else f"{root}/conv2d_1/Relu:0"
    assert resolve_tensor(proto, "conv2d") == first
    assert resolve_tensor(proto, "conv2d_1") == second
    flatten = f"{root}/flatten_1/Reshape:0" if keras3 else f"{root}/flatten/Reshape:0"
    assert resolve_tensor(proto, "flatten") == flatten  # not its shape plumbing
    assert resolve_tensor(proto, "dense") == "Identity:0"  # the softmax, named by tf2onnx
    model = onnxlens.Model(proto, device="cpu")
    assert model.resolve("conv2d_4") == conv4
    x = np.random.default_rng(1).standard_normal((2, H, W, 3)).astype(np.float32)
    np.testing.assert_array_equal(
        model.activations(x, "conv2d_4")["conv2d_4"], model.activations(x, conv4)[conv4]
    )


def test_unknown_keras_layer_name_suggests_framework_names():
    """Before: the suggestions came from tensor names ("functional_1/conv2d_4_1/Relu:0"), too far
    from "conv2d_7" for difflib, so the error suggested nothing."""
    proto = keras_tf_export()
    with pytest.raises(LayerNotFoundError, match=r"did you mean .*'conv2d_\d'"):
        resolve_tensor(proto, "conv2d_7")
    with pytest.raises(LayerNotFoundError, match=r"did you mean 'max_pooling2d'"):
        resolve_tensor(proto, "max_pooling2")


def test_layers_carry_their_framework_name_and_layout():
    proto = onnx.shape_inference.infer_shapes(keras_tf_export())  # as Model loads it
    layers = {la.name: la for la in list_layers(proto)}
    conv = layers["functional_1/conv2d_4_1/Relu:0"]
    assert conv.framework == "conv2d_4" and conv.layout == "NCHW" and conv.spatial
    nhwc = layers["Transpose__44:0"]
    assert nhwc.layout == "NHWC" and nhwc.shape == ("unk__51", H // 2, W // 2, C) and nhwc.spatial
    assert layers["functional_1/flatten_1/Reshape:0"].layout is None


def test_default_cam_layer_is_the_last_conv_map_not_the_pooled_one():
    """Before: the max-pooled (N, 6, 8, 4) map behind the flatten was chosen (and its NHWC copy
    read as NCHW); Grad-CAM's layer is the last conv feature map, conv2d_4's ReLU."""
    model = onnxlens.Model(keras_tf_export(), device="cpu")
    assert default_layer(model) == "functional_1/conv2d_4_1/Relu:0"


def test_summary_rows_are_keras_layers_in_nhwc_with_plumbing_hidden():
    model = onnxlens.Model(keras_tf_export(), device="cpu")
    rows = describe.summary_rows(model)
    assert [r.name for r in rows] == [
        "conv2d",
        "conv2d_1",
        "conv2d_2",
        "conv2d_3",
        "conv2d_4",
        "max_pooling2d",
        "flatten",
        "dense",
    ]
    by = {r.name: r for r in rows}
    # Keras' own summary: conv2d (None, 12, 16, 4), max_pooling2d (None, 6, 8, 4).
    assert by["conv2d"].shape == ("unk__51", H, W, C) and by["conv2d"].params == C * 3 * 9
    assert by["max_pooling2d"].shape == ("unk__51", H // 2, W // 2, C)
    assert by["flatten"].ops == ["Reshape"]  # Shape, Gather, Concat hidden
    assert by["dense"].ops == ["MatMul", "Softmax"]
    assert sum(r.params for r in rows) == model.param_count
    text = describe.summary(model)
    assert "Gather" not in text and "Shape" not in text.split("Total params")[0]
    everything = describe.summary(model, all_tensors=True)
    assert "Gather" in everything and "Transpose__44:0" in everything


def test_inspect_cli_all_flag(tmp_path, capsys):
    from onnxlens.cli import main

    path = tmp_path / "keras_tf.onnx"
    onnx.save(keras_tf_export(), path)
    assert main(["inspect", str(path)]) == 0
    short = capsys.readouterr().out
    assert main(["inspect", str(path), "--all"]) == 0
    full = capsys.readouterr().out
    assert "conv2d_4 " in short and "Concat" not in short
    assert "Concat" in full and "functional_1/conv2d_4_1/Relu:0" in full
    assert main(["inspect", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in data["summary"]][:2] == ["conv2d", "conv2d_1"]
    assert {la["framework"] for la in data["layers"]} >= {"conv2d_4", "dense"}


_TF_EXPORT = textwrap.dedent(
    """
    import os, sys
    os.environ["KERAS_BACKEND"] = "tensorflow"
    import numpy as np, keras
    keras.utils.set_random_seed(0)
    L = keras.layers
    inp = keras.Input((48, 64, 3), name="image")
    x = inp
    for i in range(5):
        x = L.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = L.MaxPooling2D()(x)
    x = L.Flatten()(x)
    out = L.Dense(5, activation="softmax")(x)
    model = keras.Model(inp, out)
    x = np.random.default_rng(0).standard_normal((2, 48, 64, 3)).astype("float32")
    model(x)
    model.export(sys.argv[1], format="onnx", verbose=False)
    sub = keras.Model(model.inputs, model.get_layer("conv2d_4").output)
    np.save(sys.argv[2], np.asarray(sub(x)))
    np.save(sys.argv[3], x)
    """
)


@pytest.mark.slow
def test_real_keras3_tensorflow_export_names(tmp_path):
    """A real Keras 3 model exported through TensorFlow: "conv2d_4" is conv2d_4's output."""
    for mod in ("tensorflow", "tf2onnx"):
        pytest.importorskip(
            mod,
            reason="Keras layer names are kept only by the TensorFlow export (pip install "
            "tensorflow-cpu tf2onnx, about 280 MB); Keras 3's torch-backend export (tested in "
            "tests/cli/test_keras_export.py) names its tensors /Conv_output_0 and keeps no layer names",
        )
    pytest.importorskip("keras")
    paths = [tmp_path / "m.onnx", tmp_path / "ref.npy", tmp_path / "x.npy"]
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
    subprocess.run(
        [sys.executable, "-c", _TF_EXPORT, *map(str, paths)], check=True, env=env, timeout=300
    )
    model = onnxlens.Model(Path(paths[0]), device="cpu")
    t = model.resolve("conv2d_4")
    assert model.layer(t).op == "Relu" and model.layer(t).framework == "conv2d_4"
    ref = np.load(paths[1])  # (2, 48, 64, 8), NHWC
    got = model.activations(np.load(paths[2]), "conv2d_4")["conv2d_4"]
    from onnxlens.methods.activations import to_nchw
    from onnxlens.methods.layers import layer_layout

    np.testing.assert_allclose(
        to_nchw(got, layer_layout(model, t)), ref.transpose(0, 3, 1, 2), atol=1e-4
    )
    assert default_layer(model) == t


def test_model_resolve_suggests_keras_layer_names():
    model = onnxlens.Model(keras_tf_export(), device="cpu")
    with pytest.raises(LayerNotFoundError, match=r"did you mean .*'conv2d_\d'"):
        model.resolve("conv2d_7")
