"""A real Keras 3 model, exported by Keras itself (`model.export(path, format="onnx")`, torch
backend), through the CLI and the API: per-tensor layouts (NHWC around the activations, NCHW at
each Conv), non-square inputs, the default Grad-CAM layer and the pre-softmax logit.

References come from Keras on its torch backend: intermediate outputs from a Keras sub-model,
gradients from torch autograd through the Keras layers. Nothing here reads onnxlens' own results
back as a reference.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest

import onnxlens
from onnxlens.cli import main
from onnxlens.render import channel_grid

pytestmark = pytest.mark.slow

H, W = 48, 64  # non-square on purpose: the H/W/C mix-ups hide when h == w
CLASSES = 5


@pytest.fixture(scope="module")
def keras():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    pytest.importorskip("torch", reason="Keras' torch backend needs torch (onnxlens[demo])")
    keras = pytest.importorskip("keras", reason="needs keras>=3.9 (onnxlens[test])")
    if keras.backend.backend() != "torch":
        pytest.skip(f"keras was imported with the {keras.backend.backend()} backend, not torch")
    return keras


@pytest.fixture(scope="module")
def kmodel(keras):
    """Conv2D + pooling + Dense, channels_last, 48x64 RGB; logits then a separate softmax, so
    the logit has a Keras reference of its own."""
    keras.utils.set_random_seed(0)
    L = keras.layers
    inp = keras.Input((H, W, 3), name="image")
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="conv2d")(inp)
    x = L.MaxPooling2D(name="max_pooling2d")(x)
    x = L.Conv2D(16, 3, padding="same", activation="relu", name="conv2d_1")(x)
    x = L.Conv2D(12, 3, padding="same", activation="relu", name="conv2d_2")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    logits = L.Dense(CLASSES, name="dense")(x)
    out = L.Activation("softmax", name="softmax")(logits)
    model = keras.Model(inp, out)
    model(np.zeros((1, H, W, 3), np.float32))  # export needs a called model
    return model


@pytest.fixture(scope="module")
def exported(kmodel, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("keras") / "keras_cnn.onnx"
    kmodel.export(str(path), format="onnx", verbose=False)
    return path


@pytest.fixture(scope="module")
def image_path(tmp_path_factory) -> Path:
    rng = np.random.default_rng(3)
    img = (rng.random((H, W, 3)) * 255).astype(np.uint8)
    img = cv2.GaussianBlur(img, (5, 5), 0)  # some spatial structure
    path = tmp_path_factory.mktemp("img") / "a.png"
    cv2.imwrite(str(path), img[:, :, ::-1])
    return path


def _prepared(model: onnxlens.Model, image_path: Path) -> np.ndarray:
    from onnxlens.data import load_image

    x, _ = model.prepare([load_image(image_path)])
    return x


def _keras_outputs(keras, kmodel, x: np.ndarray, names: list[str]) -> list[np.ndarray]:
    sub = keras.Model(kmodel.inputs, [kmodel.get_layer(n).output for n in names])
    outs = sub(x)
    outs = outs if isinstance(outs, list | tuple) else [outs]
    return [keras.ops.convert_to_numpy(o) for o in outs]


def _keras_grad(keras, kmodel, x: np.ndarray, layer: str, target: int, probability: bool):
    """d score / d (output of `layer`) by torch autograd through the Keras layers after it."""
    import torch

    names = [la.name for la in kmodel.layers]
    head = names[names.index(layer) + 1 :]
    feat = keras.Model(kmodel.inputs, kmodel.get_layer(layer).output)(torch.from_numpy(x))
    feat = feat.detach().requires_grad_(True)
    y = feat
    for n in head:
        if n == "softmax" and not probability:
            break
        y = kmodel.get_layer(n)(y)
    y[:, target].sum().backward()
    return feat.detach().numpy(), feat.grad.numpy()


def _tensor_after(model: onnxlens.Model, op: str, channels: int) -> str:
    """The first `op` layer with `channels` channels, whatever the exporter named it (ONNX Convs
    are NCHW; the Keras activations after them channels-last)."""
    axis = 1 if op == "Conv" else -1
    for la in model.layers:
        if la.op == op and la.shape is not None and la.shape[axis] == channels:
            return la.name
    raise AssertionError(f"no {op} with {channels} channels in {[la.op for la in model.layers]}")


def test_keras_export_has_nchw_convs_inside_an_nhwc_model(exported):
    """The premise of the layout work: Keras 3's own exporter wraps each Conv in Transposes."""
    proto = onnx.load(str(exported))
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("Conv") == 3
    conv_in = {n.input[0] for n in proto.graph.node if n.op_type == "Conv"}
    producers = {o: n.op_type for n in proto.graph.node for o in n.output}
    assert {producers.get(t) for t in conv_in} == {"Transpose"}
    model = onnxlens.Model(exported, device="cpu")
    assert model.layout == "NHWC"
    relu = [la for la in model.layers if la.op == "Relu"]
    convs = [la for la in model.layers if la.op == "Conv"]
    assert [la.layout for la in relu] == ["NHWC"] * 3
    assert [la.layout for la in convs] == ["NCHW"] * 3
    assert convs[-1].shape[1:] == (12, H // 2, W // 2)
    assert relu[-1].shape[1:] == (H // 2, W // 2, 12) and relu[-1].spatial


def test_activations_cli_grids_each_tensor_in_its_own_layout(
    keras, kmodel, exported, image_path, tmp_path
):
    """Regression: every 4-D tensor of an NHWC model was transposed as NHWC, so a Conv's NCHW
    output (N, 16, 24, 32) came out as 32 strips of 16x24."""
    model = onnxlens.Model(exported, device="cpu")
    relu = _tensor_after(model, "Relu", 16)  # conv2d_1's output, NHWC
    conv = _tensor_after(model, "Conv", 16)  # its Conv, NCHW (before the bias add)
    out = tmp_path / "acts"
    rc = main(
        [
            *("activations", str(exported), str(image_path), "--layers", relu, conv),
            *("--out", str(out), "--device", "cpu", "--save-arrays"),
        ]
    )
    assert rc == 0
    x = _prepared(model, image_path)
    (ref,) = _keras_outputs(keras, kmodel, x, ["conv2d_1"])  # (1, 24, 32, 16)
    ref_maps = ref[0].transpose(2, 0, 1)  # (16, 24, 32)
    from onnxlens.render.io import safe_filename

    def png(layer: str) -> np.ndarray:
        img = cv2.imread(str(out / "a" / f"{safe_filename(layer)}.png"))
        return img[:, :, ::-1]

    # 16 maps of 24x32 (4 x 4 tiles, upscaled x2 to reach 32 px): 4*48+5 by 4*64+5.
    assert png(relu).shape == (4 * 48 + 5, 4 * 64 + 5, 3)
    assert png(conv).shape == (4 * 48 + 5, 4 * 64 + 5, 3)
    want = channel_grid(ref_maps)
    got = png(relu)
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 2
    assert np.mean(got == want) > 0.99


def test_gradient_cli_pictures_an_nhwc_layer_and_uses_the_logit(
    keras, kmodel, exported, image_path, tmp_path, capsys
):
    """Regression: `gradient --wrt LAYER` took every layer as NCHW, so an NHWC (N, 24, 32, 12)
    gradient was maxed over H and drawn as a 32x12 picture. The default explains the pre-softmax
    logit; --probability the softmax."""
    model = onnxlens.Model(exported, device="cpu")
    relu = _tensor_after(model, "Relu", 12)
    x = _prepared(model, image_path)
    for probability in (False, True):
        out = tmp_path / f"g{int(probability)}"
        rc = main(
            ["gradient", str(exported), str(image_path), "--target", "3", "--wrt", relu]
            + ["--out", str(out), "--device", "cpu"]
            + (["--probability"] if probability else [])
        )
        assert rc == 0
        err = capsys.readouterr().err
        _, g_ref = _keras_grad(keras, kmodel, x, "conv2d_2", 3, probability)
        from onnxlens.render.io import safe_filename

        stem = f"a_{safe_filename(relu)}_default"
        g = np.load(out / f"{stem}.npy")
        np.testing.assert_allclose(g, g_ref[0], rtol=1e-3, atol=1e-5 * np.abs(g_ref).max())
        a = np.abs(g_ref[0]).max(axis=2)  # channels last: (24, 32)
        want = (a / a.max() * 255).astype(np.uint8)
        want = cv2.resize(want, (W, H), interpolation=cv2.INTER_NEAREST)
        got = cv2.imread(str(out / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
        assert got.shape == (H, W)
        assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
        assert ("explaining the logit" in err) != probability


def _gradcam_ref(feat: np.ndarray, grad: np.ndarray) -> np.ndarray:
    """Grad-CAM (Selvaraju et al. Eq. 1-2) on NHWC arrays: (N, h, w)."""
    w = grad.mean(axis=(1, 2))  # (N, C)
    return np.maximum(np.einsum("nhwc,nc->nhw", feat, w), 0)


def test_gradcam_default_layer_and_maps_match_keras_on_a_non_square_input(
    keras, kmodel, exported, image_path
):
    """Regression: an NHWC 24x32 map was taken as NCHW (24 channels of 32x12), and the default
    layer was a Cast copy behind the last conv. Grad-CAM's default layer is the last conv feature
    map before global pooling (conv2d_2's ReLU), its maps (N, 24, 32)."""
    from onnxlens.methods import GradCAM
    from onnxlens.methods.layers import default_layer

    model = onnxlens.Model(exported, device="cpu")
    x = _prepared(model, image_path)
    x = np.concatenate([x, x[:, ::-1].copy()])  # two samples
    layer = default_layer(model)
    (ref_feat,) = _keras_outputs(keras, kmodel, x, ["conv2d_2"])
    np.testing.assert_allclose(model.activations(x, layer)[layer], ref_feat, atol=1e-5)
    (softmax,) = [n for n in model.proto.graph.node if n.op_type == "Softmax"]
    assert softmax.output[0] == model.output_names[0]
    for output, probability in ((softmax.input[0], False), (None, True)):
        exp = GradCAM(model).attribute(x, target=[1, 4], output=output)
        feat, grad = _keras_grad(keras, kmodel, x, "conv2d_2", 1, probability)
        _, grad4 = _keras_grad(keras, kmodel, x, "conv2d_2", 4, probability)
        want = np.stack([_gradcam_ref(feat, grad)[0], _gradcam_ref(feat, grad4)[1]])
        assert exp.raw.shape == (2, H // 2, W // 2)
        np.testing.assert_allclose(exp.raw, want, rtol=1e-3, atol=1e-4 * want.max())
        assert exp.heatmap.shape == (2, H, W)
    assert model.layer(layer).op == "Relu"  # not the Cast copy the exporter left after it


def test_explain_cli_explains_the_logit_by_default(exported, image_path, tmp_path, capsys):
    """`explain` on a softmax output: the logit by default (said on stderr), the probability
    with --probability; the heat maps differ (the softmax mixes the classes' gradients)."""
    maps = {}
    for flag in ([], ["--probability"]):
        out = tmp_path / ("p" if flag else "l")
        rc = main(
            [
                *("explain", str(exported), str(image_path), "--target", "2", "--save-arrays"),
                *("--out", str(out), "--device", "cpu", *flag),
            ]
        )
        assert rc == 0
        captured = capsys.readouterr()
        assert ("explaining the logit" in captured.err) != bool(flag)
        assert "Relu" in captured.out  # the layer line names the last conv feature map
        maps[bool(flag)] = np.load(out / "a" / "gradcam.npy")
    assert maps[False].shape == (H, W)
    assert not np.allclose(maps[False], maps[True], atol=1e-3)


def test_inspect_matches_keras_summary_shapes_and_params(kmodel, exported, capsys):
    """The torch-backend export keeps no Keras names, but its table still reads like Keras'
    summary: one row per Conv2D (Conv + bias Add) with Keras' NHWC output shape and parameter
    count, the Transposes and Cast copies hidden (before: 42 rows, convs shown NCHW)."""
    from onnxlens.model import describe

    model = onnxlens.Model(exported, device="cpu")
    rows = describe.summary_rows(model)
    convs = [r for r in rows if r.ops[0] == "Conv"]
    keras_convs = [kmodel.get_layer(n) for n in ("conv2d", "conv2d_1", "conv2d_2")]
    assert [r.shape[1:] for r in convs] == [tuple(k.output.shape[1:]) for k in keras_convs]
    assert [r.params for r in convs] == [k.count_params() for k in keras_convs]
    assert sum(r.params for r in rows) == kmodel.count_params()
    assert not {"Transpose", "Cast"} & {op for r in rows for op in r.ops}
    assert main(["inspect", str(exported)]) == 0
    short = capsys.readouterr().out
    assert main(["inspect", str(exported), "--all"]) == 0
    full = capsys.readouterr().out
    assert "Transpose" not in short and "Transpose" in full and "NCHW" in full
    assert f"(batch, {H}, {W}, 8)" in short and "shapes in the model's NHWC layout" in short
