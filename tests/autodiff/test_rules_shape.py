"""Flatten, Reshape, Transpose, Squeeze/Unsqueeze (attr and input forms), Concat, Split (attr,
input, equal), Slice (steps, negative indices), Pad (constant/reflect/edge), Gather, Tile, ..."""

from __future__ import annotations

import numpy as np
import pytest
from vjp_helpers import check_vjp, op_model

X = (2, 3, 4, 5)


def _x(seed=0, shape=X):
    return np.random.default_rng(seed).standard_normal(shape)


@pytest.mark.parametrize(
    ("op", "attrs", "consts", "opset"),
    [
        ("Flatten", {"axis": 1}, {}, 13),
        ("Flatten", {"axis": 2}, {}, 13),
        ("Reshape", {}, {"s": np.array([0, -1, 5], np.int64)}, 13),
        ("Reshape", {}, {"s": np.array([-1, 60], np.int64)}, 13),
        ("Transpose", {"perm": [0, 2, 3, 1]}, {}, 13),
        ("Transpose", {}, {}, 13),
        ("Unsqueeze", {"axes": [1, -1]}, {}, 11),
        ("Unsqueeze", {}, {"a": np.array([0, 3], np.int64)}, 13),
        ("Identity", {}, {}, 13),
    ],
)
def test_reshape_like(op, attrs, consts, opset):
    m = op_model(op, {"x": ["N", 3, 4, 5]}, attrs, consts, opset=opset)
    check_vjp(m, {"x": _x()})


@pytest.mark.parametrize(
    ("attrs", "consts", "opset"),
    [({"axes": [2]}, {}, 11), ({}, {"a": np.array([-2], np.int64)}, 13)],
)
def test_squeeze(attrs, consts, opset):
    m = op_model("Squeeze", {"x": ["N", 3, 1, 5]}, attrs, consts, opset=opset)
    check_vjp(m, {"x": _x(1, (2, 3, 1, 5))})


@pytest.mark.parametrize("axis", [1, -1, 0])
def test_concat(axis):
    shapes = {"a": (2, 3, 4), "b": (2, 3, 4), "c": (2, 3, 4)}
    dims = {k: list(v) for k, v in shapes.items()}
    dims["b"][axis] = 2
    rng = np.random.default_rng(2)
    m = op_model("Concat", {k: v for k, v in dims.items()}, {"axis": axis})
    check_vjp(m, {k: rng.standard_normal(v) for k, v in dims.items()})


def test_concat_with_constant_and_dynamic_sizes():
    rng = np.random.default_rng(3)
    m = op_model(
        "Concat", {"a": ["N", "K", 4]}, {"axis": 1}, {"w": rng.standard_normal((2, 2, 4))}, opset=13
    )
    check_vjp(m, {"a": rng.standard_normal((2, 3, 4))})


@pytest.mark.parametrize(
    ("attrs", "consts", "opset", "n"),
    [
        ({"axis": 1, "split": [1, 2]}, {}, 11, 2),
        ({"axis": 1}, {}, 11, 3),
        ({"axis": -1}, {"s": np.array([2, 3], np.int64)}, 13, 2),
        ({"axis": 2, "num_outputs": 2}, {}, 18, 2),
    ],
)
def test_split(attrs, consts, opset, n):
    m = op_model("Split", {"x": ["N", 3, 4, 5]}, attrs, consts, opset=opset, n_outputs=n)
    check_vjp(m, {"x": _x(4)})
    check_vjp(m, {"x": _x(4)}, seeds=["y0"])  # other outputs absent: zeros only where needed


@pytest.mark.parametrize(
    ("starts", "ends", "axes", "steps"),
    [
        ([1], [3], [1], None),
        ([0, 1], [2, -1], [2, 3], None),
        ([-1], [-1000], [3], [-1]),
        ([3, 0], [0, 5], [2, 3], [-2, 2]),
        ([1], [100], [-1], [3]),
    ],
)
def test_slice(starts, ends, axes, steps):
    consts = {
        "st": np.array(starts, np.int64),
        "en": np.array(ends, np.int64),
        "ax": np.array(axes, np.int64),
    }
    if steps:
        consts["sp"] = np.array(steps, np.int64)
    m = op_model("Slice", {"x": ["N", 3, 4, 5]}, {}, consts)
    check_vjp(m, {"x": _x(5)})


def test_slice_and_pad_before_opset11():
    """Attribute-form Slice and constant Pad differentiate into each other (test_opsets.py has
    more cases); a reflect Pad before opset 11, which needs ScatterElements, is refused."""
    from onnxlens.autodiff import build_vjp
    from onnxlens.errors import UnsupportedOperatorError

    m = op_model(
        "Slice", {"x": ["N", 3, 4, 5]}, {"starts": [1, 0], "ends": [3, -1], "axes": [1, 3]}, opset=9
    )
    check_vjp(m, {"x": _x(3)})
    m = op_model(
        "Pad",
        {"x": ["N", 3, 4, 5]},
        {"pads": [0, 0, 1, 1, 0, 0, 1, 1], "mode": "reflect"},
        opset=10,
    )
    with pytest.raises(UnsupportedOperatorError, match="convert_version"):
        build_vjp(m, ["y0"], ["x"])


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
def test_pad(mode):
    consts = {"p": np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64)}
    if mode == "constant":
        consts["v"] = np.array(0.5)
    m = op_model("Pad", {"x": ["N", 3, 4, 5]}, {"mode": mode}, consts, opset=18)
    check_vjp(m, {"x": _x(7)})


def test_pad_negative_crop():
    m = op_model(
        "Pad",
        {"x": ["N", 3, 4, 5]},
        {},
        {"p": np.array([0, 0, -1, 2, 0, 0, 1, -2], np.int64)},
        opset=13,
    )
    check_vjp(m, {"x": _x(8)})


@pytest.mark.parametrize(
    ("pads", "axes", "opset"),
    [
        ([0, 0, 0, 1, 0, 0, 1, 2], None, 13),  # TF "same" padding, as torch exports it
        ([0, 0, -1, 2, 0, 0, 1, -2], None, 17),
        ([1, -1, 2, 0], [2, -1], 18),
    ],
)
def test_pad_constant_pads_known_at_run_time(pads, axes, opset):
    """Pads computed in the graph (torch's static padding: Constant -> ... -> Cast): the
    transpose is a zero Pad by -pads, with no index replay or scatter (which a pinned-batch CPU
    session would fold into int64 constants of the padded size)."""
    from onnx import helper

    from onnxlens.autodiff import build_vjp

    consts = {"p": np.array(pads, np.int64)}
    order = ["x", "p"]
    if axes is not None:
        consts["ax"] = np.array(axes, np.int64)
        order += ["", "ax"]
    m = op_model("Pad", {"x": ["N", 3, 4, 5]}, {}, consts, order=order, opset=opset)
    m.graph.node.insert(0, helper.make_node("Identity", ["p"], ["p_rt"], name="pads_at_run_time"))
    m.graph.node[1].input[1] = "p_rt"
    check_vjp(m, {"x": _x(10)})
    ops = {n.op_type for n in build_vjp(m, ["y0"], ["x"]).proto.graph.node}
    assert not ops & {"ScatterElements", "ConstantOfShape", "Range"}


@pytest.mark.parametrize("blocksize", [1, 2])
def test_depth_space(blocksize):
    check_vjp(
        op_model("SpaceToDepth", {"x": ["N", 3, 4, 6]}, {"blocksize": blocksize}),
        {"x": _x(9, (2, 3, 4, 6))},
    )
    check_vjp(
        op_model("DepthToSpace", {"x": ["N", 8, 2, 3]}, {"blocksize": 2}),
        {"x": _x(9, (2, 8, 2, 3))},
    )


@pytest.mark.parametrize(
    ("axis", "indices"),
    [
        (1, np.array([2, 0])),
        (3, np.array([[1, -1], [0, 3]])),
        (0, np.array(1)),
        (2, np.array([1, 1, 3])),
    ],
)
def test_gather(axis, indices):
    m = op_model("Gather", {"x": [2, 3, 4, 5]}, {"axis": axis}, {"i": indices.astype(np.int64)})
    check_vjp(m, {"x": _x(10)})


def test_gather_elements_and_tile():
    idx = np.random.default_rng(11).integers(0, 4, (2, 3, 2, 5)).astype(np.int64)
    check_vjp(
        op_model("GatherElements", {"x": [2, 3, 4, 5]}, {"axis": 2}, {"i": idx}), {"x": _x(11)}
    )
    check_vjp(
        op_model("Tile", {"x": ["N", 3, 4, 5]}, {}, {"r": np.array([1, 2, 1, 3], np.int64)}),
        {"x": _x(12)},
    )
