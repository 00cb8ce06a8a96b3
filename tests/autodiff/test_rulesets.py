"""Attribution rule sets: guided backprop and deconvnet against captum on VGG-16, overlays."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from vjp_helpers import check_vjp, op_model, session

from onnxlens import Model
from onnxlens.autodiff import build_vjp, default_rules, rule_set
from onnxlens.errors import ConfigurationError

sys.path.insert(0, str(Path(__file__).parents[1]))
import zoo

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def vgg(tmp_path_factory):
    torch.manual_seed(0)
    net = zoo.VGG16().eval()
    for p in net.parameters():
        p.requires_grad_(False)
    path = tmp_path_factory.mktemp("vgg") / "vgg16.onnx"
    zoo.export(net, path, (224, 224), batch=2)
    return net, Model(path, device="cpu", threads=2)


class IndexedMaxPool(torch.nn.Module):
    """MaxPool whose winners are given (ORT's Indices), so near-ties (top values equal to float32
    rounding, which ORT's and torch's convolutions order differently) route the same way in both;
    the rule sets' semantics are then compared exactly."""

    def __init__(self, indices: np.ndarray) -> None:
        super().__init__()
        self.indices = torch.from_numpy(indices)

    def forward(self, x):
        n, c, h, w = x.shape
        base = torch.arange(n * c).view(n, c, 1, 1) * (h * w)
        local = (self.indices - base).flatten(2)
        return x.flatten(2).gather(2, local).view(self.indices.shape)


@pytest.mark.parametrize("rules", ["guided", "deconvnet"])
def test_matches_captum(vgg, rules):
    captum_attr = pytest.importorskip(
        "captum.attr", reason="captum is not installed (pip install captum)"
    )
    net, model = vgg
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 224, 224)).astype(np.float32)
    targets = [1, 500]
    ours = model.gradient(x, targets, rules=rules)
    # ORT's MaxPool winners for these inputs: the forward graph with each MaxPool's Indices output
    fwd = onnx.ModelProto()
    fwd.CopyFrom(model.proto)
    idx_names = []
    for node in fwd.graph.node:
        if node.op_type == "MaxPool":
            idx_names.append(node.output[0] + "/indices")
            node.output.append(idx_names[-1])
    for name in idx_names:
        fwd.graph.output.append(
            onnx.helper.make_tensor_value_info(name, onnx.TensorProto.INT64, None)
        )
    indices = session(fwd).run(idx_names, {"input": x})
    pools = [i for i, m in enumerate(net.features) if isinstance(m, torch.nn.MaxPool2d)]
    features = torch.nn.Sequential(
        *[
            IndexedMaxPool(indices[pools.index(i)]) if i in pools else m
            for i, m in enumerate(net.features)
        ]
    )
    routed = torch.nn.Sequential(features, net.avgpool, torch.nn.Flatten(), net.classifier).eval()
    method = (
        captum_attr.GuidedBackprop(routed)
        if rules == "guided"
        else captum_attr.Deconvolution(routed)
    )
    ref = (
        method.attribute(torch.from_numpy(x).requires_grad_(True), target=targets).detach().numpy()
    )
    rel = np.abs(ours - ref).max() / np.abs(ref).max()
    assert rel <= 1e-3, f"{rules}: max abs diff / max abs = {rel:.2e}"


def test_guided_and_deconvnet_relu_rules():
    """Guided: gradient only where input > 0 and gradient > 0; deconvnet: relu(gradient)."""
    m = op_model("Relu", {"x": ["N", 4]})
    x = np.array([[-1.0, 2.0, 3.0, -4.0]])
    c = np.array([[1.0, -1.0, 2.0, 5.0]])
    expected = {"default": [[0, -1, 2, 0]], "guided": [[0, 0, 2, 0]], "deconvnet": [[1, 0, 2, 5]]}
    for name, want in expected.items():
        vg = build_vjp(m, ["y0"], ["x"], rules=name)
        (g,) = session(vg.proto).run([vg.grad_outputs["x"]], {"x": x, vg.seed_inputs["y0"]: c})
        np.testing.assert_array_equal(g, want)


@pytest.mark.parametrize("opset", [9, 17])
def test_guided_and_deconvnet_relu6_rules(opset):
    """ReLU6 (Clip with min 0) belongs to the ReLU family: guided keeps the Clip mask and only
    positive gradients, deconvnet is relu(gradient); a Clip with another lower bound keeps the
    default rule under every set."""
    # float32: ORT has no double Clip before opset 11
    f32 = onnx.TensorProto.FLOAT
    x = np.array([[-1.0, 2.0, 3.0, 7.0, 5.0]], np.float32)
    c = np.array([[1.0, -1.0, 2.0, 5.0, -3.0]], np.float32)
    lo, hi = np.float32(0.0), np.float32(6.0)
    if opset < 11:
        relu6 = op_model(
            "Clip", {"x": ["N", 5]}, attrs={"min": 0.0, "max": 6.0}, opset=opset, dtype=f32
        )
        other = op_model(
            "Clip", {"x": ["N", 5]}, attrs={"min": -2.0, "max": 6.0}, opset=opset, dtype=f32
        )
    else:
        relu6 = op_model(
            "Clip", {"x": ["N", 5]}, consts={"lo": lo, "hi": hi}, opset=opset, dtype=f32
        )
        other = op_model(
            "Clip",
            {"x": ["N", 5]},
            consts={"lo": np.float32(-2.0), "hi": hi},
            opset=opset,
            dtype=f32,
        )
    expected = {
        "default": [[0, -1, 2, 0, -3]],
        "guided": [[0, 0, 2, 0, 0]],
        "deconvnet": [[1, 0, 2, 5, 0]],
    }
    for name, want in expected.items():
        for m, w in ((relu6, want), (other, [[1, -1, 2, 0, -3]])):
            vg = build_vjp(m, ["y0"], ["x"], rules=name)
            (g,) = session(vg.proto).run([vg.grad_outputs["x"]], {"x": x, vg.seed_inputs["y0"]: c})
            np.testing.assert_array_equal(g, w, err_msg=f"{name}, opset {opset}")


def test_overlay_replaces_rule_per_op_type():
    """A later rule set (e.g. LRP) is a dict overlay on the default registry."""

    def double_relu(ctx, grads):
        b = ctx.b
        return [
            b.mul(
                b.where_zero(b.op("Greater", [ctx.y(), b.scalar(0.0, ctx.y())]), grads[0]),
                b.scalar(2.0, ctx.y()),
            )
        ]

    rs = default_rules().overlay({"Relu": double_relu}, "x2")
    assert rs.lookup("", "Relu") is double_relu and rs.lookup("", "Conv") is default_rules().lookup(
        "", "Conv"
    )
    assert default_rules().lookup("", "Relu") is not double_relu  # the default set is untouched
    m = op_model("Relu", {"x": ["N", 3]})
    vg = build_vjp(m, ["y0"], ["x"], rules=rs)
    (g,) = session(vg.proto).run(
        [vg.grad_outputs["x"]],
        {"x": np.array([[1.0, -1.0, 2.0]]), vg.seed_inputs["y0"]: np.ones((1, 3))},
    )
    np.testing.assert_array_equal(g, [[2, 0, 2]])
    vg = build_vjp(
        m, ["y0"], ["x"], rules={"Relu": double_relu}
    )  # a plain dict overlays the default
    (g,) = session(vg.proto).run(
        [vg.grad_outputs["x"]],
        {"x": np.array([[1.0, -1.0, 2.0]]), vg.seed_inputs["y0"]: np.ones((1, 3))},
    )
    np.testing.assert_array_equal(g, [[2, 0, 2]])


def test_unknown_rule_set():
    with pytest.raises(ConfigurationError, match="guided"):
        rule_set("lrp-epsilon")


def test_default_rules_unchanged_by_sets():
    assert rule_set("guided").lookup("", "Conv") is rule_set("default").lookup("", "Conv")
    check_vjp(op_model("Relu", {"x": ["N", 3]}), {"x": np.array([[0.5, -0.3, 1.2]])})


def test_model_caches_custom_rule_sets_by_content(tmp_path, monkeypatch):
    """Model.vjp caches graphs per rule set: a new set must get its own graph even when it lands
    at the address of a collected one, while an equal set may share. Address reuse is made
    certain by giving every object the same id()."""
    import builtins
    import gc

    from onnxlens.autodiff.registry import RuleSet

    m = op_model("Relu", {"x": ["N", 3]}, dtype=onnx.TensorProto.FLOAT)
    path = tmp_path / "relu.onnx"
    onnx.save(m, path)
    model = Model(str(path), device="cpu")
    x = np.array([[1.0, -1.0, 2.0]], np.float32)
    seed = np.ones((1, 3), np.float32)

    def scaled(k):
        def rule(ctx, grads):
            b = ctx.b
            return [b.mul(b.mul(grads[0], b.step(ctx.y(), 0.0, above=True)), b.scalar(k, ctx.y()))]

        return rule

    monkeypatch.setattr(builtins, "id", lambda obj: 0)
    base = dict(default_rules())
    tables = {k: {**base, ("", "Relu"): scaled(k)} for k in (2.0, 3.0, 5.0, 7.0, 11.0, 13.0)}
    for k, table in tables.items():
        rs = RuleSet(table, f"x{k}")
        g = model.vjp(x, {"y0": seed}, "input", rules=rs)["input"]
        np.testing.assert_array_equal(g, [[k, 0, k]])
        del rs
        gc.collect()
    same = RuleSet(tables[2.0], "again")
    np.testing.assert_array_equal(
        model.vjp(x, {"y0": seed}, "input", rules=same)["input"], [[2, 0, 2]]
    )


def test_overlay_rules_declare_the_outputs_they_differentiate():
    """An overlay rule for a multi-output op gets one cotangent per output when it declares
    differentiable_outputs(None), zeros where a part has none; undeclared, it takes output 0 only
    and a cotangent on another output is refused."""
    from onnxlens.autodiff.registry import differentiable_outputs
    from onnxlens.errors import UnsupportedOperatorError

    m = op_model("Split", {"x": ["N", 4]}, {"axis": 1, "num_outputs": 2}, opset=18, n_outputs=2)
    counts = []

    @differentiable_outputs(None)
    def doubled_split(ctx, grads):
        counts.append(len(grads))
        b = ctx.b
        return ctx.first(b.mul(b.op("Concat", grads, axis=1), b.scalar(2.0, ctx.x())))

    vg = build_vjp(m, ["y1"], ["x"], rules={"Split": doubled_split})
    c = np.array([[1.0, -3.0], [0.5, 2.0]])
    (g,) = session(vg.proto).run(
        [vg.grad_outputs["x"]], {"x": np.ones((2, 4)), vg.seed_inputs["y1"]: c}
    )
    np.testing.assert_array_equal(g, [[0, 0, 2, -6], [0, 0, 1, 4]])
    assert counts == [2]

    def first_part_only(ctx, grads):
        return ctx.first(grads[0])

    with pytest.raises(UnsupportedOperatorError, match=r"output 1 \('y1'\)"):
        build_vjp(m, ["y1"], ["x"], rules={"Split": first_part_only})
