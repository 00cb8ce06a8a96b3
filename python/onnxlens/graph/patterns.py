"""Pattern matching on ONNX graphs: the node chains exporters emit for familiar layers.

Pure functions over an `onnx.ModelProto`; they read the graph and never change it.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

__all__ = ["constant_value", "gap_classifier_weights"]

# Nodes that only rename or reshape the pooled (N, C[, 1, 1]) features on their way to the
# classifier; before the pooling only Identity is neutral (a Reshape there would mix positions).
_PASS_AFTER_POOL = ("Flatten", "Reshape", "Squeeze", "Identity")
# Spatial axes of a rank-4 map: NCHW (PyTorch, ONNX convention) and NHWC (Keras via tf2onnx).
_SPATIAL_AXES = ({2, 3}, {1, 2})
# Exporters put at most a couple of reshapes between pooling and the classifier.
_MAX_CHAIN = 8


def constant_value(model: onnx.ModelProto, name: str) -> np.ndarray | None:
    """The value of tensor `name` when the graph stores it (an initializer or a Constant node's
    `value`), else None (a graph input or a tensor computed at run time)."""
    g = model.graph
    for t in g.initializer:
        if t.name == name:
            return numpy_helper.to_array(t)
    for n in g.node:
        if n.op_type == "Constant" and n.domain in ("", "ai.onnx") and name in n.output:
            for a in n.attribute:
                if a.name == "value":
                    return numpy_helper.to_array(a.t)
    return None


def _reduce_axes(model: onnx.ModelProto, node: onnx.NodeProto) -> set[int] | None:
    """A ReduceMean's axes, normalised for a rank-4 input; None when it reduces every axis."""
    axes: list[int] | None = None
    for a in node.attribute:
        if a.name == "axes":  # opset <= 17
            axes = list(a.ints)
    if axes is None and len(node.input) > 1 and node.input[1]:  # opset >= 18: an input
        value = constant_value(model, node.input[1])
        if value is None:
            return None
        axes = [int(v) for v in np.asarray(value).reshape(-1)]
    if not axes:
        return None
    return {a % 4 for a in axes}


def gap_classifier_weights(model: onnx.ModelProto, tensor: str) -> np.ndarray | None:
    """(K, C) float32 weights of the fully connected layer that `tensor`, a rank-4 feature map,
    feeds through global average pooling; None when the graph after `tensor` is not that.

    Matched, following `tensor` forward through the node that is its only consumer (Shape nodes
    are ignored: they read the shape, not the values, as `x.view(x.size(0), -1)` exports them):

    - GlobalAveragePool -> [Flatten | Reshape | Squeeze]* -> Gemm: PyTorch's
      `nn.AdaptiveAvgPool2d(1)` + `torch.flatten` (or `.view`) + `nn.Linear`;
    - ReduceMean over the two spatial axes -> [Flatten | Reshape | Squeeze]* -> Gemm | MatMul:
      `x.mean((2, 3))` in PyTorch (axes (2, 3) or (-2, -1)), Keras' `GlobalAveragePooling2D` via
      tf2onnx (NHWC, axes (1, 2), then MatMul + Add); the axes may be an attribute (opset <= 17)
      or a constant input (opset >= 18);
    - Identity nodes anywhere on the way.

    The classifier reads the pooled features as its first input; its weight must be stored in the
    graph (`constant_value`). Gemm with transB=1 holds (K, C), PyTorch's layout; Gemm with
    transB=0 and MatMul hold (C, K) and are transposed; Gemm's `alpha` scales them. Gemm with
    transA=1 is not matched.
    """
    g = model.graph
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in g.node:
        for i in dict.fromkeys(n.input):
            if i:
                consumers.setdefault(i, []).append(n)
    t = tensor
    pooled = False
    for _ in range(_MAX_CHAIN):
        cons = [n for n in consumers.get(t, []) if n.op_type != "Shape"]
        if len(cons) != 1 or cons[0].domain not in ("", "ai.onnx"):
            return None
        n = cons[0]
        if n.input[0] != t:
            return None
        op = n.op_type
        if not pooled and op == "GlobalAveragePool":
            pooled = True
        elif not pooled and op == "ReduceMean":
            if _reduce_axes(model, n) not in _SPATIAL_AXES:
                return None
            pooled = True
        elif op == "Identity" or (pooled and op in _PASS_AFTER_POOL):
            pass
        elif pooled and op in ("Gemm", "MatMul") and len(n.input) > 1:
            attrs = {a.name: a for a in n.attribute}
            if "transA" in attrs and attrs["transA"].i:
                return None
            w = constant_value(model, n.input[1])
            if w is None or w.ndim != 2:
                return None
            k_by_c = op == "Gemm" and "transB" in attrs and attrs["transB"].i
            alpha = attrs["alpha"].f if op == "Gemm" and "alpha" in attrs else 1.0
            return np.ascontiguousarray((w if k_by_c else w.T) * alpha, dtype=np.float32)
        else:
            return None
        t = n.output[0]
    return None
