"""Per-tensor image layout: which axis of each rank-4 tensor is the batch, channel, height, width.

Layout is a property of a tensor, not of a model. Keras exports (tf2onnx, Keras 3's
`model.export(format="onnx")`) take NHWC images but run every convolution in ONNX's NCHW,
wrapped in Transposes, so one model holds NHWC tensors (around the activations and bias adds)
and NCHW ones (each Conv's input and output). A layout here is a 4-letter string, a permutation
of "NCHW" naming each axis in order: "NCHW", "NHWC", or whatever a Transpose makes.

Inference: the image inputs' layouts are given (`graph.inputs` detects them); the ONNX ops that
are NCHW by definition (Conv, pools, BatchNormalization, ...) fix their data input and output to
"NCHW"; a Transpose permutes its input's letters; layout-agnostic ops (elementwise, Concat,
Resize, Pad, reductions that keep dims) pass their rank-4 input's layout on. Reshape, Flatten,
MatMul and other ops that mix axes end the chain (unknown, None). Forward and backward passes
alternate until nothing changes, so a tensor known only from its consumer (the Transpose before
a Conv) is found too.
"""

from __future__ import annotations

from collections.abc import Mapping

import onnx

from .layers import value_infos

NCHW = "NCHW"

#: ONNX ops whose data input and first output are NCHW by the operator's definition.
NCHW_OPS = frozenset(
    {
        "Conv",
        "ConvTranspose",
        "ConvInteger",
        "QLinearConv",
        "DeformConv",
        "MaxPool",
        "AveragePool",
        "LpPool",
        "GlobalAveragePool",
        "GlobalMaxPool",
        "GlobalLpPool",
        "BatchNormalization",
        "InstanceNormalization",
        "GroupNormalization",
        "LRN",
        "MaxUnpool",
        "MaxRoiPool",
        "DepthToSpace",
        "SpaceToDepth",
        "Col2Im",
    }
)

#: Ops that pass their rank-4 data input's layout on to a rank-4 output (elementwise and
#: axis-preserving ops). Anything else mixes or drops axes: its outputs get no layout.
PRESERVING_OPS = frozenset(
    {
        # unary elementwise
        "Abs", "Acos", "Asin", "Atan", "Ceil", "Cos", "Cosh", "Elu", "Erf", "Exp", "Floor",
        "Gelu", "HardSigmoid", "HardSwish", "Identity", "IsInf", "IsNaN", "LeakyRelu", "Log",
        "Mish", "Neg", "Not", "Reciprocal", "Relu", "Round", "Selu", "Sigmoid", "Sign", "Sin",
        "Sinh", "Softplus", "Softsign", "Sqrt", "Tan", "Tanh", "ThresholdedRelu", "Celu",
        "Cast", "CastLike", "Clip", "Dropout", "Shrink", "QuantizeLinear", "DequantizeLinear",
        # broadcasting binary / variadic
        "Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Mean", "Sum", "Mod", "PRelu",
        "Where", "Equal", "Greater", "Less", "GreaterOrEqual", "LessOrEqual", "And", "Or",
        "Xor", "BitShift",
        # axis-preserving
        "Concat", "Split", "Slice", "Pad", "Resize", "Upsample", "Tile", "Expand",
    }
)  # fmt: skip

#: Reductions: the layout survives when keepdims is on (SE blocks: mean over H, W).
REDUCE_OPS = frozenset(
    {
        "ReduceMean",
        "ReduceMax",
        "ReduceMin",
        "ReduceSum",
        "ReduceProd",
        "ReduceL1",
        "ReduceL2",
        "ReduceLogSum",
        "ReduceLogSumExp",
        "ReduceSumSquare",
    }
)


def _rank(infos: Mapping[str, onnx.ValueInfoProto], name: str) -> int | None:
    vi = infos.get(name)
    if vi is None or not vi.type.tensor_type.HasField("shape"):
        return None
    return len(vi.type.tensor_type.shape.dim)


def _perm(node: onnx.NodeProto) -> list[int] | None:
    for a in node.attribute:
        if a.name == "perm":
            return list(a.ints)
    return None


def _keepdims(node: onnx.NodeProto) -> bool:
    return next((bool(a.i) for a in node.attribute if a.name == "keepdims"), True)


def _is_perm(letters: str) -> bool:
    return len(letters) == 4 and sorted(letters) == sorted(NCHW)


def tensor_layouts(
    model: onnx.ModelProto, input_layouts: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Layout ("NCHW", "NHWC", or another permutation of "NCHW") of every rank-4 tensor whose
    layout follows from the graph; tensors of unknown layout are absent.

    `input_layouts` maps graph inputs to their layout (default: what `graph.inputs` detects for
    rank-4 image inputs)."""
    if input_layouts is None:
        from .inputs import input_infos  # graph.inputs imports graph.layers: import late

        input_layouts = {i.name: i.layout for i in input_infos(model) if _is_perm(i.layout)}
    infos = value_infos(model)
    nodes = [n for n in model.graph.node if n.domain in ("", "ai.onnx")]
    lay: dict[str, str] = {}
    # What the operators define comes first: it overrides a guessed input layout (an NCHW input
    # with 3 rows would look NHWC).
    for node in nodes:
        if (
            node.op_type in NCHW_OPS
            and node.input
            and 4
            in (
                _rank(infos, node.input[0]),
                _rank(infos, node.output[0]) if node.output else None,
            )
        ):
            lay[node.input[0]] = NCHW
            if node.output and node.output[0]:
                lay[node.output[0]] = NCHW
    for k, v in input_layouts.items():
        if _is_perm(v):
            lay.setdefault(k, v)

    def rank4(name: str) -> bool:
        return bool(name) and _rank(infos, name) == 4

    def setl(name: str, letters: str | None) -> bool:
        if letters is None or not name or name in lay or not _is_perm(letters):
            return False
        if _rank(infos, name) not in (4, None):
            return False
        lay[name] = letters
        return True

    for _ in range(8):  # forward and backward until a fixed point (a few passes in practice)
        changed = False
        for node in nodes:
            op = node.op_type
            if op == "Transpose":
                p = _perm(node)
                src, dst = node.input[0], node.output[0]
                if p is None or len(p) != 4 or sorted(p) != [0, 1, 2, 3]:
                    continue
                if src in lay:
                    changed |= setl(dst, "".join(lay[src][i] for i in p))
                elif dst in lay:
                    inv = [0] * 4
                    for i, q in enumerate(p):
                        inv[q] = i
                    changed |= setl(src, "".join(lay[dst][i] for i in inv))
            elif op in PRESERVING_OPS or (op in REDUCE_OPS and _keepdims(node)):
                data = [i for i in node.input if rank4(i)]
                known = {lay[i] for i in data if i in lay}
                outs = [o for o in node.output if rank4(o)]
                if len(known) == 1:
                    (letters,) = known
                    for o in outs:
                        changed |= setl(o, letters)
                    if op not in REDUCE_OPS:  # an elementwise op's rank-4 operands share axes
                        for i in data:
                            changed |= setl(i, letters)
                elif not known and op not in REDUCE_OPS:
                    back = {lay[o] for o in outs if o in lay}
                    if len(back) == 1:
                        (letters,) = back
                        for i in data:
                            changed |= setl(i, letters)
        if not changed:
            break
    return lay


def channel_axis(layout: str | None) -> int:
    """The channel axis of a tensor with `layout` (1 when unknown: ONNX's NCHW convention)."""
    return layout.index("C") if layout and _is_perm(layout) else 1


def spatial_axes(layout: str | None) -> tuple[int, int]:
    """(H axis, W axis) of a tensor with `layout` ((2, 3) when unknown)."""
    if layout and _is_perm(layout):
        return layout.index("H"), layout.index("W")
    return 2, 3


def to_nchw_perm(layout: str | None) -> tuple[int, int, int, int]:
    """The `np.transpose` axes that bring a tensor of `layout` to (N, C, H, W)."""
    if not layout or not _is_perm(layout):
        return (0, 1, 2, 3)
    return tuple(layout.index(c) for c in NCHW)  # type: ignore[return-value]
