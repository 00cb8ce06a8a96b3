"""Explanation objects, targets, layers, errors, metrics, the CLI, and real weights on real photos."""

from __future__ import annotations

import logging

import numpy as np
import onnx
import pytest

import onnxlens
from onnxlens.errors import ConfigurationError, ShapeError
from onnxlens.graph.head import head_graph
from onnxlens.methods.explanation import normalize_maps
from onnxlens.methods.layers import to_maps, token_grid
from onnxlens.runtime import GraphKey
from synthetic import tiny_cnn

CAM_CLASSES = [
    "CAM",
    "GradCAM",
    "GradCAMPlusPlus",
    "XGradCAM",
    "HiResCAM",
    "LayerCAM",
    "EigenCAM",
    "ScoreCAM",
    "AblationCAM",
]
ALL = [
    *CAM_CLASSES,
    "Saliency",
    "SmoothGrad",
    "InputXGradient",
    "IntegratedGradients",
    "GuidedBackprop",
    "Deconvolution",
    "GuidedGradCAM",
    "Occlusion",
]


@pytest.fixture
def tiny() -> onnxlens.Model:
    return onnxlens.Model(tiny_cnn(size=16), threads=1)


@pytest.mark.parametrize("name", ALL)
def test_every_method_returns_normalised_maps_and_targets(tiny, name: str) -> None:
    x = np.random.default_rng(0).standard_normal((3, 3, 16, 16)).astype(np.float32)
    kw = {"window": 4, "stride": 4} if name == "Occlusion" else {}
    exp = getattr(onnxlens, name)(tiny, progress=False, **kw).attribute(x)
    assert exp.heatmap.shape == (3, 16, 16) and exp.heatmap.dtype == np.float32
    assert np.isfinite(exp.heatmap).all() and exp.heatmap.min() >= 0 and exp.heatmap.max() <= 1
    logits = tiny.predict(x)
    assert exp.target.tolist() == logits.argmax(1).tolist()
    np.testing.assert_allclose(exp.scores, logits, rtol=1e-5)
    exp2 = getattr(onnxlens, name)(tiny, progress=False, **kw).attribute(x, target=[0, 1, 4])
    assert exp2.target.tolist() == [0, 1, 4]


def test_targets_cotangent_and_errors(tiny) -> None:
    x = np.random.default_rng(1).standard_normal((2, 3, 16, 16)).astype(np.float32)
    cot = np.zeros((2, 5), np.float32)
    cot[0, 2] = cot[1, 3] = 1
    a = onnxlens.GradCAM(tiny).attribute(x, target=cot)
    b = onnxlens.GradCAM(tiny).attribute(x, target=[2, 3])
    np.testing.assert_allclose(a.heatmap, b.heatmap, atol=1e-6)
    np.testing.assert_allclose(a.target_scores, b.target_scores, rtol=1e-6)
    assert (
        onnxlens.GradCAM(tiny).attribute(x, target="logits").target.tolist()
        == tiny.predict(x).argmax(1).tolist()
    )
    with pytest.raises(ShapeError, match="one per input"):
        onnxlens.GradCAM(tiny).attribute(x, target=[1, 2, 3])
    with pytest.raises(ConfigurationError, match="out of range"):
        onnxlens.Saliency(tiny).attribute(x, target=9)
    with pytest.raises(onnxlens.LayerNotFoundError, match="did you mean"):
        onnxlens.GradCAM(tiny, layer="relu_ou").attribute(x)


def test_default_layer_is_announced_once_and_layers_can_be_named(tiny, caplog) -> None:
    x = np.random.default_rng(2).standard_normal((1, 3, 16, 16)).astype(np.float32)
    with caplog.at_level(logging.INFO, logger="onnxlens"):
        e1 = onnxlens.GradCAM(tiny).attribute(x)
        onnxlens.GradCAM(tiny).attribute(x)
    assert e1.layers == ["pool_out"]  # the last spatial map before global pooling
    assert sum("explains layer pool_out" in r.message for r in caplog.records) == 1
    e2 = onnxlens.GradCAM(tiny, layer="relu1").attribute(x)  # a node name
    assert e2.layers == ["relu_out"] and e2.raw.shape == (1, 16, 16)


def test_cam_equals_gradcam_on_gap_fc_and_errors_elsewhere(tiny) -> None:
    x = np.random.default_rng(3).standard_normal((2, 3, 16, 16)).astype(np.float32)
    cam = onnxlens.CAM(tiny).attribute(x, target=[1, 2])
    grad = onnxlens.GradCAM(tiny).attribute(x, target=[1, 2])
    np.testing.assert_allclose(cam.heatmap, grad.heatmap, atol=1e-5)
    with pytest.raises(ConfigurationError, match="Use GradCAM"):
        onnxlens.CAM(tiny, layer="relu_out").attribute(x)


def test_constant_maps_become_zeros() -> None:
    m = np.zeros((2, 4, 4), np.float32)
    m[1] = np.nan
    out = normalize_maps(m)
    assert (out == 0).all()
    ramp = normalize_maps(np.arange(16, dtype=np.float32).reshape(1, 4, 4))
    assert ramp.min() == 0 and ramp.max() == 1


def test_token_grids(tiny) -> None:
    assert (
        token_grid(197) == (14, 14, 1)
        and token_grid(196) == (14, 14, 0)
        and token_grid(50) == (7, 7, 1)
    )
    assert token_grid(7) is None
    t = np.arange(2 * 5 * 3, dtype=np.float32).reshape(
        2, 5, 3
    )  # class token + 2x2 patches, 3 channels
    g = to_maps(t, tiny)
    assert g.shape == (2, 3, 2, 2)
    np.testing.assert_array_equal(g[0, :, 0, 1], t[0, 2])
    with pytest.raises(ConfigurationError, match="grid="):
        to_maps(np.zeros((1, 7, 3), np.float32), tiny)
    assert to_maps(np.zeros((1, 7, 3), np.float32), tiny, grid=(2, 3)).shape == (1, 3, 2, 3)


def test_head_graph_is_none_around_a_skip_connection(resnet18) -> None:
    _, model, _ = resnet18
    assert head_graph(model.proto, "/layer4/layer4.1/Relu_1_output_0") is not None
    assert (
        head_graph(model.proto, "/layer4/layer4.1/Relu_output_0") is None
    )  # the block's skip path
    g = head_graph(model.proto, "/layer4/layer4.1/Relu_output_0", allow_input=True)
    assert [i.name for i in g.graph.input] == ["/layer4/layer4.1/Relu_output_0", "input"]
    onnx.checker.check_model(g)


def test_ablation_cam_through_a_skip_connection(resnet18) -> None:
    """A layer inside a residual block: the rest of the block is recomputed from the input."""
    _, model, x = resnet18
    layer = "/layer4/layer4.1/Relu_output_0"
    exp = onnxlens.AblationCAM(model, layer=layer, progress=False).attribute(x[:1], target=[5])
    # Brute force for two channels: zero the channel inside the full graph via the override graph.
    acts = model.activations(x[:1], [layer])[layer]
    sess = model.session(
        GraphKey("override", (layer,)), lambda: head_graph(model.proto, layer, allow_input=True)
    )
    base = sess.run(["logits"], {layer: acts, "input": x[:1]})[0][0, 5]
    for c in (0, 7):
        a = acts.copy()
        a[:, c] = 0
        full = model.predict(x[:1])[0, 5]
        assert abs(full - base) < 1e-3 * max(1.0, abs(full))
        drop = (base - sess.run(["logits"], {layer: a, "input": x[:1]})[0][0, 5]) / base
        assert np.isfinite(drop)
    assert exp.heatmap.shape == (1, 112, 112) and exp.raw.shape == (1, 4, 4)


def test_overlay_and_notebook_display(vgg) -> None:
    _, model, x = vgg
    exp = onnxlens.GradCAM(model).attribute(x)
    with pytest.raises(ConfigurationError, match="overlay"):
        exp.overlay()
    imgs = np.zeros((2, 64, 64, 3), np.uint8)
    ov = exp.overlay(imgs)
    assert ov.shape == (2, 64, 64, 3) and ov.dtype == np.uint8
    exp.images = imgs
    assert exp._repr_png_()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "gradcam" in exp._repr_html_() and "base64" in exp._repr_html_()


def test_deletion_insertion_rank_a_good_map_above_its_inverse(vgg) -> None:
    _, model, x = vgg
    exp = onnxlens.Occlusion(model, window=8, stride=4, progress=False).attribute(x)
    inv = onnxlens.Explanation(
        exp.method, 1 - exp.heatmap, None, exp.target, exp.scores, exp.output, inputs=exp.inputs
    )
    for mode, better in ((onnxlens.deletion, np.less), (onnxlens.insertion, np.greater)):
        good, bad = (
            mode(model, exp, steps=16, probabilities=False, progress=False),
            mode(model, inv, steps=16, probabilities=False, progress=False),
        )
        assert good.scores.shape == (2, 17) and good.fractions[0] == 0 and good.fractions[-1] == 1
        assert better(good.auc, bad.auc).all(), (good.mode, good.auc, bad.auc)
    np.testing.assert_allclose(
        good.scores[:, -1], exp.target_scores, rtol=1e-4
    )  # all inserted = the input


def test_sanity_check_randomisation_changes_gradcam_not_edge_detector(vgg) -> None:
    _, model, x = vgg
    res = onnxlens.sanity_check(onnxlens.GradCAM(model), x, steps=3, progress=False)
    assert res.spearman.shape == (4, 2) and (res.spearman[0] == 1).all()
    assert (
        res.spearman[-1].mean() < 0.5
    )  # fully randomised: the map no longer resembles the original
    assert res.layers[1] == "/fc/Gemm"


def test_cli_explain(tmp_path, vgg) -> None:
    import cv2

    from onnxlens.cli import build_parser
    from onnxlens.cli import explain as cli_explain

    _, model, _ = vgg
    paths = []
    for i in range(2):
        p = tmp_path / f"img{i}.png"
        cv2.imwrite(str(p), np.random.default_rng(i).integers(0, 255, (80, 90, 3), np.uint8))
        paths.append(str(p))
    import argparse

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    cli_explain.add_parser(sub)
    args = parser.parse_args(
        [
            "explain",
            str(model.path),
            *paths,
            "--method",
            "gradcam",
            "ig",
            "occlusion",
            "--target",
            "3",
            "--size",
            "64",
            "64",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert cli_explain.run(args) == 0
    for stem in ("img0", "img1"):
        for m in ("gradcam", "ig", "occlusion"):
            assert (tmp_path / "out" / stem / f"{m}.png").exists()
    grid = cv2.imread(str(tmp_path / "out" / "comparison.png"))
    assert grid.shape == (2 * 64 + 4, 4 * 64 + 3 * 4, 3)
    del build_parser


@pytest.mark.parametrize("method", ["GradCAM", "GradCAMPlusPlus", "LayerCAM"])
def test_efficientnet_classes_land_on_their_objects(efficientnet_path, photos, method: str) -> None:
    """EfficientNet-Lite0 (real ImageNet weights) on cat | coffee cup side by side: the map for
    'Egyptian cat' (285) peaks on the cat half, the map for 'espresso' (967) on the cup half."""
    import cv2

    model = onnxlens.Model(efficientnet_path, threads=2)
    cat = cv2.resize(photos[0], (224, 224))
    cup = cv2.resize(photos[1], (224, 224))
    both = np.concatenate([cat, cup], axis=1)
    exp = getattr(onnxlens, method)(model).attribute([both, both], target=[285, 967])
    w = exp.heatmap.shape[2]
    left = exp.heatmap[:, :, : w // 2].mean((1, 2))
    right = exp.heatmap[:, :, w // 2 :].mean((1, 2))
    peak_col = exp.heatmap.reshape(2, -1).argmax(1) % w
    assert peak_col[0] < w // 2 <= peak_col[1], peak_col
    assert left[0] > 1.3 * right[0] and right[1] > 1.3 * left[1], (left, right)
    if method == "GradCAM":  # the most class-discriminative of the three
        assert left[0] > 2 * right[0] and right[1] > 2 * left[1], (left, right)
