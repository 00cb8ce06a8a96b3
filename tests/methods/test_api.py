"""Explanation objects, targets, layers, errors, metrics, the CLI, and real weights on real photos."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import onnxlens
from onnxlens.errors import ConfigurationError, ShapeError
from onnxlens.graph.head import head_graph
from onnxlens.methods.explanation import normalize_maps
from onnxlens.methods.layers import to_maps, token_grid
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


OCCLUSION_16 = {"sliding_window_shapes": 4, "strides": 4}  # a 4x4 grid of windows on 16x16


@pytest.fixture
def tiny() -> onnxlens.Model:
    return onnxlens.Model(tiny_cnn(size=16), threads=1)


def ort_outputs(proto: onnx.ModelProto, x: np.ndarray) -> dict[str, np.ndarray]:
    """Every output of `proto` on `x` from a plain onnxruntime session (no onnxlens code)."""
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, {sess.get_inputs()[0].name: x}), strict=True))


def two_outputs() -> onnx.ModelProto:
    """tiny_cnn(size=16) with a second output neg = -logits (its top class is logits' bottom one)."""
    proto = tiny_cnn(size=16)
    proto.graph.node.append(helper.make_node("Neg", ["logits"], ["neg"], name="negate"))
    proto.graph.output.append(helper.make_tensor_value_info("neg", TensorProto.FLOAT, ["N", 5]))
    onnx.checker.check_model(proto)
    return proto


@pytest.mark.parametrize("name", ALL)
def test_every_method_returns_maps_targets_and_scores(tiny, name: str) -> None:
    x = np.random.default_rng(0).standard_normal((3, 3, 16, 16)).astype(np.float32)
    kw = OCCLUSION_16 if name == "Occlusion" else {}
    exp = getattr(onnxlens, name)(tiny, progress=False).attribute(x, **kw)
    assert exp.heatmap.shape == (3, 16, 16) and exp.heatmap.dtype == np.float32
    assert np.isfinite(exp.heatmap).all()
    logits = ort_outputs(tiny_cnn(size=16), x)["logits"]
    assert exp.output == "logits"
    assert exp.target.tolist() == logits.argmax(1).tolist()
    np.testing.assert_allclose(exp.scores, logits, rtol=1e-5, atol=1e-6)
    exp2 = getattr(onnxlens, name)(tiny, progress=False).attribute(x, target=[0, 1, 4], **kw)
    assert exp2.target.tolist() == [0, 1, 4]
    np.testing.assert_allclose(exp2.target_scores, logits[[0, 1, 2], [0, 1, 4]], rtol=1e-5)


def test_targets_cotangent_and_errors(tiny) -> None:
    x = np.random.default_rng(1).standard_normal((2, 3, 16, 16)).astype(np.float32)
    cot = np.zeros((2, 5), np.float32)
    cot[0, 2] = cot[1, 3] = 1
    a = onnxlens.GradCAM(tiny).attribute(x, target=cot)
    b = onnxlens.GradCAM(tiny).attribute(x, target=[2, 3])
    np.testing.assert_allclose(a.heatmap, b.heatmap, atol=1e-6)
    np.testing.assert_allclose(a.target_scores, b.target_scores, rtol=1e-6)
    logits = ort_outputs(tiny_cnn(size=16), x)["logits"]
    np.testing.assert_allclose(a.target_scores, logits[[0, 1], [2, 3]], rtol=1e-5)
    # The old spelling target="output name": that output's top class, with a deprecation.
    with pytest.deprecated_call(match=r"pass output='logits'") as rec:
        old = onnxlens.GradCAM(tiny).attribute(x, target="logits")
    assert rec[0].filename == __file__
    assert old.output == "logits" and old.target.tolist() == logits.argmax(1).tolist()
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
    # the last convolutional feature map before the final spatial reduction (Grad-CAM's and
    # tf-keras-vis' choice), not the max-pooled copy of it
    assert e1.layers == ["relu_out"]
    assert sum("explains layer relu_out" in r.message for r in caplog.records) == 1
    e2 = onnxlens.GradCAM(tiny, layer="relu1").attribute(x)  # a node name
    assert e2.layers == ["relu_out"] and e2.raw.shape == (1, 16, 16)


def test_cam_equals_gradcam_on_gap_fc_and_errors_elsewhere(tiny) -> None:
    x = np.random.default_rng(3).standard_normal((2, 3, 16, 16)).astype(np.float32)
    cam = onnxlens.CAM(tiny).attribute(x, target=[1, 2])  # CAM reads the map GAP averages
    grad = onnxlens.GradCAM(tiny, layer="pool_out").attribute(x, target=[1, 2])
    np.testing.assert_allclose(cam.heatmap, grad.heatmap, atol=1e-5)
    with pytest.raises(ConfigurationError, match="Use GradCAM"):
        onnxlens.CAM(tiny, layer="relu_out").attribute(x)


def test_cam_refuses_a_layer_after_pooling_that_does_not_score_the_output() -> None:
    """An MLP head (GAP -> fc 4->5 -> Relu -> fc 5->3): the first fc is no classifier of logits."""
    proto = tiny_cnn(size=16)
    fc = next(n for n in proto.graph.node if n.name == "fc")
    fc.output[0] = "hidden"
    rng = np.random.default_rng(11)
    proto.graph.initializer.append(
        onnx.numpy_helper.from_array(rng.standard_normal((3, 5)).astype(np.float32), "fc2.w")
    )
    proto.graph.node.extend(
        [
            helper.make_node("Relu", ["hidden"], ["hidden_relu"], name="relu2"),
            helper.make_node("Gemm", ["hidden_relu", "fc2.w"], ["logits"], transB=1, name="fc2"),
        ]
    )
    proto.graph.output[0].type.tensor_type.shape.dim[1].dim_value = 3
    onnx.checker.check_model(proto)
    model = onnxlens.Model(proto, threads=1)
    x = np.random.default_rng(12).standard_normal((1, 3, 16, 16)).astype(np.float32)
    with pytest.raises(ConfigurationError, match="5 outputs but 'logits' has 3"):
        onnxlens.CAM(model).attribute(x)
    assert onnxlens.GradCAM(model).attribute(x).heatmap.shape == (1, 16, 16)


def test_fc_weights_moved_to_graph_patterns(tiny) -> None:
    from onnxlens.methods.cam import fc_weights

    stored = next(t for t in tiny_cnn(size=16).graph.initializer if t.name == "fc.w")
    with pytest.deprecated_call(match="gap_classifier_weights"):
        w = fc_weights(tiny, "pool1")  # a node name, as before
    np.testing.assert_array_equal(w, onnx.numpy_helper.to_array(stored))


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
    """A layer inside a residual block: the rest of the block is recomputed from the input. The
    reference ablates each channel in torch (the block's first ReLU output, then the rest of the
    block, its skip connection, pooling and fc) and builds relu(sum_c w_c A_c) with
    w_c = (s - s_c) / s in numpy."""
    import torch

    net, model, x = resnet18
    layer = "/layer4/layer4.1/Relu_output_0"
    target = 5
    exp = onnxlens.AblationCAM(model, layer=layer, progress=False).attribute(x[:1], target=[target])
    assert exp.heatmap.shape == (1, 112, 112) and exp.raw.shape == (1, 4, 4)

    block = net.layer4[1]
    assert block.down is None  # identity skip: out = relu(bn2(conv2(A)) + h)

    def rest(h: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        out = torch.relu(block.bn2(block.conv2(a)) + h)
        return net.fc(torch.flatten(net.avgpool(out), 1))[:, target]

    with torch.no_grad():
        got: dict[str, torch.Tensor] = {}
        hook = net.layer4[0].register_forward_hook(lambda m, i, o: got.setdefault("h", o))
        full = float(net(torch.from_numpy(x[:1]))[0, target])
        hook.remove()
        h = got["h"]
        acts_t = torch.relu(block.bn1(block.conv1(h)))  # the layer, (1, C, 4, 4)
        assert abs(float(rest(h, acts_t)[0]) - full) < 1e-4 * max(1.0, abs(full))
        c = acts_t.shape[1]
        ablated_in = acts_t.repeat(c, 1, 1, 1)
        ablated_in[torch.arange(c), torch.arange(c)] = 0
        ablated = rest(h.expand(c, -1, -1, -1), ablated_in).double().numpy()
    acts = acts_t[0].double().numpy()
    np.testing.assert_allclose(exp.scores[0, target], full, rtol=1e-4, atol=1e-4)
    weights = (full - ablated) / full
    ref = np.maximum(np.tensordot(weights, acts, axes=1), 0)
    scale = float(np.abs(ref).max())
    assert scale > 0
    np.testing.assert_allclose(exp.raw[0], ref, rtol=0, atol=2e-3 * scale)


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
    import torch

    net, model, x = vgg
    exp = onnxlens.Occlusion(model, progress=False).attribute(x, sliding_window_shapes=8, strides=4)
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
    # All pixels inserted = the input: the score is torch's logit of the target on it.
    with torch.no_grad():
        logits = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(
        good.scores[:, -1], logits[np.arange(len(x)), exp.target], rtol=1e-4, atol=1e-5
    )


def test_sanity_check_randomisation_changes_gradcam_not_edge_detector(vgg) -> None:
    _, model, x = vgg
    res = onnxlens.sanity_check(onnxlens.GradCAM(model), x, steps=3, progress=False)
    assert res.spearman.shape == (4, 2) and (res.spearman[0] == 1).all()
    assert (
        res.spearman[-1].mean() < 0.5
    )  # fully randomised: the map no longer resembles the original
    assert res.layers[1] == "/fc/Gemm"


def _cli_images(tmp_path) -> list[str]:
    import cv2

    paths = []
    for i in range(2):
        p = tmp_path / f"img{i}.png"
        cv2.imwrite(str(p), np.random.default_rng(i).integers(0, 255, (80, 90, 3), np.uint8))
        paths.append(str(p))
    return paths


def _cli_explain(model_path, paths: list[str], out, *flags: str) -> int:
    import argparse

    from onnxlens.cli import explain as cli_explain

    parser = argparse.ArgumentParser()
    cli_explain.add_parser(parser.add_subparsers())
    args = parser.parse_args(
        ["explain", str(model_path), *paths, *flags, "--size", "64", "64", "--out", str(out)]
    )
    return cli_explain.run(args)


def test_cli_explain(tmp_path, vgg) -> None:
    import cv2

    _, model, _ = vgg
    paths = _cli_images(tmp_path)
    out = tmp_path / "out"
    flags = ["--method", "gradcam", "ig", "occlusion", "--output", "logits", "--target", "3"]
    assert _cli_explain(model.path, paths, out, *flags) == 0
    for stem in ("img0", "img1"):
        for m in ("gradcam", "ig", "occlusion"):
            assert (out / stem / f"{m}.png").exists()
    grid = cv2.imread(str(out / "comparison.png"))
    assert grid.shape == (2 * 64 + 4, 4 * 64 + 3 * 4, 3)


def test_cli_explain_target_takes_class_indices_and_output_the_output(
    tmp_path, vgg, caplog
) -> None:
    _, model, _ = vgg
    paths = _cli_images(tmp_path)
    new, old = tmp_path / "new", tmp_path / "old"
    common = ["--method", "gradcam", "--save-arrays"]
    assert _cli_explain(model.path, paths, new, *common, "--output", "logits") == 0
    with caplog.at_level(logging.WARNING, logger="onnxlens"):
        assert _cli_explain(model.path, paths, old, *common, "--target", "logits") == 0
    assert any(
        "--target logits" in r.message and "--output logits" in r.message for r in caplog.records
    )
    for stem in ("img0", "img1"):
        np.testing.assert_array_equal(
            np.load(new / stem / "gradcam.npy"), np.load(old / stem / "gradcam.npy")
        )
    with pytest.raises(ConfigurationError, match="--output NAME"):
        _cli_explain(model.path, paths, old, *common, "--target", "cat")
    with pytest.raises(ConfigurationError, match="use --output logits alone"):
        _cli_explain(model.path, paths, old, *common, "--target", "logits", "--output", "/fc/Gemm")
    with pytest.raises(onnxlens.LayerNotFoundError):
        _cli_explain(model.path, paths, old, *common, "--output", "logitz")


# -- one vocabulary: per-call knobs on attribute(), captum's names, old spellings deprecated ----

DEPRECATED = [
    (
        "IntegratedGradients",
        {"steps": 8, "method": "riemann_left", "baseline": 0.5},
        {"n_steps": 8, "method": "riemann_left", "baselines": 0.5},
    ),
    ("SmoothGrad", {"samples": 3, "noise_level": 0.4}, {"nt_samples": 3, "noise_level": 0.4}),
    (
        "Occlusion",
        {"window": 4, "stride": 2, "baseline": 0.3},
        {"sliding_window_shapes": 4, "strides": 2, "baselines": 0.3},
    ),
    ("GradCAM", {"batch_size": 1}, {"internal_batch_size": 1}),
    ("ScoreCAM", {"batch_size": 2}, {"internal_batch_size": 2}),
    ("AblationCAM", {"batch_size": 1}, {"internal_batch_size": 1}),
    ("Saliency", {"batch_size": 1}, {"internal_batch_size": 1}),
    ("GuidedGradCAM", {"batch_size": 1}, {"internal_batch_size": 1}),
]


@pytest.mark.parametrize(("name", "old", "new"), DEPRECATED, ids=[d[0] for d in DEPRECATED])
def test_old_constructor_spellings_warn_and_mean_the_new_ones(tiny, name, old, new) -> None:
    x = np.random.default_rng(4).standard_normal((2, 3, 16, 16)).astype(np.float32)
    cls = getattr(onnxlens, name)
    with pytest.deprecated_call() as rec:
        legacy = cls(tiny, progress=False, **old)
    messages = [str(w.message) for w in rec if issubclass(w.category, DeprecationWarning)]
    assert len(messages) == len(old)
    for (o, n), msg in zip(zip(old, new, strict=True), messages, strict=True):
        assert f"{name}({o}=...)" in msg and f"pass {n}= to attribute()" in msg
    assert all(w.filename == __file__ for w in rec)  # points at the caller's line
    got = legacy.attribute(x, target=[1, 3])
    want = cls(tiny, progress=False).attribute(x, target=[1, 3], **new)
    np.testing.assert_array_equal(got.raw, want.raw)
    np.testing.assert_array_equal(got.heatmap, want.heatmap)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # copies carry the settings without warning again
        again = legacy.with_model(tiny).attribute(x, target=[1, 3])
    np.testing.assert_array_equal(again.raw, want.raw)
    if "batch_size" not in old:  # the old value is used, not ignored
        default = cls(tiny, progress=False).attribute(x, target=[1, 3])
        assert not np.allclose(default.raw, want.raw)


def test_per_call_knobs_override_deprecated_constructor_defaults(tiny) -> None:
    x = np.random.default_rng(5).standard_normal((1, 3, 16, 16)).astype(np.float32)
    with pytest.deprecated_call():
        ig = onnxlens.IntegratedGradients(tiny, steps=4, progress=False)
    a = ig.attribute(x, target=2, n_steps=16)
    b = onnxlens.IntegratedGradients(tiny, progress=False).attribute(x, target=2, n_steps=16)
    np.testing.assert_array_equal(a.raw, b.raw)


def test_old_positional_settings_are_refused_with_the_fix() -> None:
    model = onnxlens.Model(tiny_cnn(size=16), threads=1)
    for cls in (onnxlens.IntegratedGradients, onnxlens.SmoothGrad, onnxlens.Occlusion):
        with pytest.raises(ConfigurationError, match="go to attribute"):
            cls(model, 32)


def test_internal_batch_size_changes_batching_not_results(tiny) -> None:
    x = np.random.default_rng(6).standard_normal((3, 3, 16, 16)).astype(np.float32)
    for name, kw in (
        ("IntegratedGradients", {"n_steps": 6}),
        ("SmoothGrad", {"nt_samples": 4}),
        ("Occlusion", OCCLUSION_16),
        ("ScoreCAM", {}),
        ("AblationCAM", {}),
        ("GradCAM", {}),
    ):
        method = getattr(onnxlens, name)(tiny, progress=False)
        one = method.attribute(x, target=[0, 2, 4], internal_batch_size=1, **kw)
        default = method.attribute(x, target=[0, 2, 4], **kw)
        np.testing.assert_allclose(one.raw, default.raw, rtol=1e-5, atol=1e-6, err_msg=name)
    with pytest.raises(ConfigurationError, match="internal_batch_size"):
        onnxlens.Saliency(tiny).attribute(x, internal_batch_size=0)


def test_output_is_chosen_apart_from_the_target() -> None:
    """Two outputs, logits and neg = -logits: output= picks one per call (default: the
    constructor's, else the first); gradients and score drops of neg are those of logits negated."""
    proto = two_outputs()
    model = onnxlens.Model(proto, threads=1)
    x = np.random.default_rng(7).standard_normal((2, 3, 16, 16)).astype(np.float32)
    ref = ort_outputs(proto, x)
    np.testing.assert_allclose(ref["neg"], -ref["logits"], rtol=0, atol=0)

    first = onnxlens.GradCAM(model).attribute(x)
    per_call = onnxlens.GradCAM(model).attribute(x, output="neg")
    ctor = onnxlens.GradCAM(model, output="neg").attribute(x)
    back = onnxlens.GradCAM(model, output="neg").attribute(x, output="logits")
    assert first.output == back.output == "logits" and per_call.output == ctor.output == "neg"
    assert first.target.tolist() == ref["logits"].argmax(1).tolist()
    assert per_call.target.tolist() == ref["logits"].argmin(1).tolist()
    np.testing.assert_allclose(per_call.scores, ref["neg"], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(per_call.heatmap, ctor.heatmap)
    np.testing.assert_array_equal(first.heatmap, back.heatmap)
    with pytest.raises(onnxlens.LayerNotFoundError):
        onnxlens.GradCAM(model).attribute(x, output="negg")

    target = [1, 3]
    for name, kw in (
        ("Saliency", {}),
        ("IntegratedGradients", {"n_steps": 8}),
        ("Occlusion", OCCLUSION_16),
    ):
        ctor_kw = {"abs": False} if name == "Saliency" else {}
        method = getattr(onnxlens, name)(model, progress=False, **ctor_kw)
        pos = method.attribute(x, target=target, **kw)
        neg = method.attribute(x, target=target, output="neg", **kw)
        np.testing.assert_allclose(neg.raw, -pos.raw, rtol=1e-5, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(neg.target_scores, -ref["logits"][[0, 1], target], rtol=1e-5)


def test_smoothgrad_stdevs_is_absolute_and_noise_level_relative(tiny) -> None:
    x = np.random.default_rng(8).standard_normal((1, 3, 16, 16)).astype(np.float32)
    span = float(x.max() - x.min())
    sg = onnxlens.SmoothGrad(tiny, magnitude=False, seed=1, progress=False)
    rel = sg.attribute(x, target=0, nt_samples=5, noise_level=0.2)
    absolute = sg.attribute(x, target=0, nt_samples=5, stdevs=0.2 * span)
    np.testing.assert_allclose(absolute.raw, rel.raw, rtol=1e-4, atol=1e-6)
    other = sg.attribute(x, target=0, nt_samples=5, stdevs=0.2)
    assert not np.allclose(other.raw, rel.raw)
    with pytest.raises(ConfigurationError, match="not both"):
        sg.attribute(x, stdevs=0.1, noise_level=0.1)
    with pytest.raises(ConfigurationError, match="nt_samples"):
        sg.attribute(x, nt_samples=0)
    with pytest.raises(ConfigurationError, match="stdevs"):
        sg.attribute(x, stdevs=-1.0)


def test_occlusion_window_spellings_and_errors(tiny) -> None:
    x = np.random.default_rng(9).standard_normal((1, 3, 16, 16)).astype(np.float32)
    occ = onnxlens.Occlusion(tiny, progress=False)
    a = occ.attribute(x, target=1, sliding_window_shapes=(4, 6), strides=(2, 3))
    b = occ.attribute(x, target=1, sliding_window_shapes=(3, 4, 6), strides=(3, 2, 3))  # captum's
    np.testing.assert_array_equal(a.raw, b.raw)
    with pytest.raises(ConfigurationError, match="spans all 3 channels"):
        occ.attribute(x, sliding_window_shapes=(1, 4, 4))
    with pytest.raises(ConfigurationError, match="larger than the input"):
        occ.attribute(x, sliding_window_shapes=32)
    with pytest.raises(ConfigurationError, match="strides"):
        occ.attribute(x, strides=0)
    with pytest.raises(ConfigurationError, match="baselines"):
        occ.attribute(x, baselines=np.zeros((2, 3, 16, 16), np.float32))


def test_integrated_gradients_settings_fail_before_running(tiny) -> None:
    ig = onnxlens.IntegratedGradients(tiny)
    with pytest.raises(ConfigurationError, match="unknown integration method"):
        ig.attribute(np.zeros((1, 3, 16, 16), np.float32), method="simpson")
    with pytest.raises(ConfigurationError, match="n_steps"):
        ig.attribute(np.zeros((1, 3, 16, 16), np.float32), n_steps=0)


def test_sanity_check_passes_attribute_knobs_on(tiny) -> None:
    x = np.random.default_rng(10).standard_normal((2, 3, 16, 16)).astype(np.float32)
    res = onnxlens.sanity_check(
        onnxlens.Occlusion(tiny, progress=False), x, steps=1, progress=False, **OCCLUSION_16
    )
    want = onnxlens.Occlusion(tiny, progress=False).attribute(x, **OCCLUSION_16)
    np.testing.assert_array_equal(res.explanations[0].raw, want.raw)
    assert res.explanations[1].raw.shape == want.raw.shape
    # The default 16x16 window covers the whole input: one drop everywhere, a constant map.
    assert np.ptp(want.raw[0]) > 0


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
