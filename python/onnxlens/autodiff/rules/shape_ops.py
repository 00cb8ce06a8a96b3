"""Data movement: Flatten, Reshape, Squeeze, Unsqueeze, Transpose, Concat, Split, Slice, Pad,
Gather, GatherElements, Tile, DepthToSpace/SpaceToDepth.

Reshape-like ops reshape the gradient back to Shape(x); a constant Pad's gradient is the Pad by
-pads (crop where it padded, zero-pad where it cropped). Ops that pick or repeat elements
(Slice with any steps and negative indices, Gather, reflect/edge/wrap Pad, Tile) share one
trick: the primal node is replayed on an int64 tensor holding each input element's flat index,
which says where every output element came from; ScatterElements then sends the gradient back
(with reduction="add" where an element can be picked twice). This keeps the batch dim dynamic
and follows the op's own semantics exactly, for any attribute/input form of the opset.
"""

from __future__ import annotations

import numpy as np
from onnx import helper

from ..registry import InputGrads, RuleContext, deflinear, register


@deflinear("Flatten", "Reshape", "Squeeze", "Unsqueeze")
def reshape_back(ctx: RuleContext, g: str) -> str:
    return ctx.b.reshape_like(g, ctx.x())


@deflinear("Transpose")
def transpose(ctx: RuleContext, g: str) -> str:
    perm = ctx.attr("perm")
    if perm is None:
        perm = list(reversed(range(ctx.rank(ctx.x()))))
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return ctx.b.op("Transpose", [g], perm=inv)


@register("Concat")
def concat(ctx: RuleContext, grads: list[str]) -> InputGrads:
    b, g = ctx.b, grads[0]
    rank = ctx.rank(ctx.y())
    axis = int(ctx.attr("axis"))
    axis = axis + rank if axis < 0 else axis
    sizes: list[int] | str = []
    static = []
    for x in ctx.inputs:
        s = b.static_shape(x)
        static.append(s[axis] if s is not None and len(s) > axis else None)
    if all(isinstance(d, int) and d >= 0 for d in static):
        sizes = static  # type: ignore[assignment]
    else:
        if ctx.opset < 13:
            ctx.fail(
                "Concat inputs with unknown sizes along the axis need opset >= 13 (pass input_shape=)"
            )
        parts = [b.op("Gather", [b.shape(x), b.ints([axis])], axis=0) for x in ctx.inputs]
        sizes = b.op("Concat", parts, axis=0)
    if len(ctx.inputs) == 1:
        return [g]
    outs = b.split(g, sizes, axis, len(ctx.inputs))
    return [o if ctx.wants(i) else None for i, o in enumerate(outs)]


@register("Split", outputs=None)
def split(ctx: RuleContext, grads: list[str]) -> InputGrads:
    """The parts' cotangents side by side (the sweep gives zeros for parts without one)."""
    axis = int(ctx.attr("axis", 0))
    return ctx.first(grads[0] if len(grads) == 1 else ctx.b.op("Concat", grads, axis=axis))


def replay_scatter(
    ctx: RuleContext,
    g: str,
    duplicates: bool,
    offset: int = 0,
    replace: dict[int, str] | None = None,
    zero_value_attr: bool = False,
) -> str:
    """Gradient of a gather-like node: replay it on flat indices, scatter the gradient back.

    `offset` = 1 leaves slot 0 of the buffer for outputs that do not come from the input (Pad's
    constant), dropped afterwards.
    """
    b, x = ctx.b, ctx.x()
    if ctx.opset < 11:
        ctx.fail(
            f"its backward needs Range and ScatterElements (opset 11), the model has opset {ctx.opset}; "
            "convert it with onnx.version_converter.convert_version(model, 11)"
        )
    if duplicates and ctx.opset < 16:
        ctx.fail(
            f"its backward needs ScatterElements(reduction='add') from opset 16, the model has opset {ctx.opset}; "
            "convert it with onnx.version_converter.convert_version(model, 16)"
        )
    idx = b.flat_index_tensor(x, offset)
    inputs = list(ctx.inputs)
    inputs[0] = idx
    for i, name in (replace or {}).items():
        if i < len(inputs) and inputs[i]:
            inputs[i] = name
    out = b.names("replay")
    node = helper.make_node(
        ctx.node.op_type, inputs, [out], name=b.names("replay_node"), domain=ctx.node.domain
    )
    node.attribute.extend(
        a for a in ctx.node.attribute if not (zero_value_attr and a.name == "value")
    )
    b.nodes.append(node)
    flat_idx = b.op("Reshape", [out, b.ints([-1])])
    flat_g = b.op("Reshape", [g, b.ints([-1])])
    n = b.numel(x)
    if offset:
        n = b.op("Add", [n, b.ints([offset])])
    zero = helper.make_tensor("zero", b.elem_type(x), [1], [0])
    buf = b.op("ConstantOfShape", [n], value=zero)
    res = b.op(
        "ScatterElements", [buf, flat_idx, flat_g], axis=0, reduction="add" if duplicates else None
    )
    if offset:
        res = b.op("Slice", [res, b.ints([offset]), b.ints([2**62]), b.ints([0])])
    return b.reshape_like(res, x)


def _slice_params(ctx: RuleContext) -> tuple[list[int], list[int], list[int], list[int]] | None:
    """(starts, ends, axes, steps) of a Slice, attributes (opset < 10) or constant inputs."""
    if ctx.opset < 10:
        starts, ends = list(ctx.attr("starts")), list(ctx.attr("ends"))
        axes = list(ctx.attr("axes") or range(len(starts)))
        return starts, ends, axes, [1] * len(starts)
    vals = [ctx.b.constant_value(ctx.x(i)) if ctx.x(i) else None for i in range(1, 5)]
    if vals[0] is None or vals[1] is None or (ctx.x(3) and vals[2] is None):
        return None
    if ctx.x(4) and vals[3] is None:
        return None
    starts = [int(v) for v in np.asarray(vals[0]).reshape(-1)]
    ends = [int(v) for v in np.asarray(vals[1]).reshape(-1)]
    axes = (
        [int(v) for v in np.asarray(vals[2]).reshape(-1)]
        if vals[2] is not None
        else list(range(len(starts)))
    )
    steps = (
        [int(v) for v in np.asarray(vals[3]).reshape(-1)]
        if vals[3] is not None
        else [1] * len(starts)
    )
    return starts, ends, axes, steps


def _slice_by_pad(ctx: RuleContext, g: str) -> str:
    """Before opset 11 (no ScatterElements): a unit-step Slice's transpose is a zero Pad, from
    constant starts/ends and the static sizes of the sliced axes."""
    params = _slice_params(ctx)
    if params is None:
        ctx.fail(
            f"its starts/ends are computed at run time, which needs opset 11 (the model has {ctx.opset})"
        )
    starts, ends, axes, steps = params
    if any(st != 1 for st in steps):
        ctx.fail(f"steps other than 1 need opset 11 (the model has {ctx.opset})")
    rank = ctx.rank(ctx.x())
    axes = [a + rank if a < 0 else a for a in axes]
    dims = ctx.static_dims(ctx.x(), axes)
    pads = [0] * (2 * rank)
    for a, st, en, d in zip(axes, starts, ends, dims, strict=True):
        st = min(max(st + d if st < 0 else st, 0), d)
        en = min(max(en + d if en < 0 else en, 0), d)
        pads[a], pads[a + rank] = st, d - max(en, st)
    return ctx.b.op("Pad", [g], pads=pads, mode="constant", value=0.0)


@deflinear("Slice")
def slice_(ctx: RuleContext, g: str) -> str:
    if ctx.opset < 11:
        return _slice_by_pad(ctx, g)
    return replay_scatter(ctx, g, duplicates=False)


@deflinear("Gather")
def gather(ctx: RuleContext, g: str) -> str:
    idx = ctx.b.constant_value(ctx.x(1))
    dup = True
    if idx is not None:
        s = ctx.b.static_shape(ctx.x())
        axis = int(ctx.attr("axis", 0))
        flat = idx.reshape(-1).astype(np.int64)
        size = s[axis] if s is not None else None
        if isinstance(size, int):
            flat = np.where(flat < 0, flat + size, flat)
        dup = len(np.unique(flat)) != flat.size
    return replay_scatter(ctx, g, duplicates=dup)


@deflinear("GatherElements", "GatherND", "Tile")
def gather_elements(ctx: RuleContext, g: str) -> str:
    """Indices (or repeats) can pick an element twice: the scatter adds."""
    return replay_scatter(ctx, g, duplicates=True)


@deflinear("Pad")
def pad(ctx: RuleContext, g: str) -> str:
    mode = ctx.attr("mode", "constant")
    if ctx.opset < 11 and mode == "constant" and min(ctx.attr("pads") or [0]) >= 0:
        # attribute pads: the transpose is the crop back (no ScatterElements before opset 11)
        pads = list(ctx.attr("pads") or [])
        rank = len(pads) // 2
        big = 2**62
        ends = [-p if p else big for p in pads[rank:]]
        return ctx.b.slice(g, pads[:rank], ends, list(range(rank)))
    if ctx.opset < 11 and mode == "constant":
        # `value` attribute: a float pad value, fine for the int64 index tensor too; 0 -> slot 0
        return replay_scatter(ctx, g, duplicates=False, offset=1, zero_value_attr=True)
    if mode == "constant":
        # A constant Pad zero-pads (pad > 0) or crops (pad < 0) each side; the transpose does
        # the other: a zero Pad by -pads, per side, whatever the signs and whether the pads are
        # known before run time. Not replay_scatter: once a CPU session pins the batch, ORT's
        # constant folding turns its index tensors into int64 constants of the padded size (Lite0,
        # batch 4 at 224: 200 MB of constants, 600 MB per session).
        b = ctx.b
        known = b.constant_value(ctx.x(1))
        neg = (
            b.ints((-np.asarray(known, np.int64).reshape(-1)).tolist())
            if known is not None
            else b.op("Neg", [ctx.x(1)])
        )
        axes = ctx.x(3)  # opset 18's optional axes: the pads' axes, the same for the transpose
        return b.op("Pad", [g, neg, "", axes] if axes else [g, neg], mode="constant")
    # reflect, edge, wrap: an input element can appear several times, the scatter adds.
    replace = {2: ctx.b.const(np.array(0, dtype=np.int64))}
    return replay_scatter(ctx, g, duplicates=True, offset=1, replace=replace)


@deflinear("DepthToSpace", "SpaceToDepth")
def depth_space(ctx: RuleContext, g: str) -> str:
    """SpaceToDepth and DepthToSpace(mode=DCR) are each other's inverse permutations."""
    bs = int(ctx.attr("blocksize"))
    if ctx.node.op_type == "SpaceToDepth":
        return ctx.b.op("DepthToSpace", [g], blocksize=bs, mode="DCR")
    if ctx.attr("mode", "DCR") != "DCR":
        ctx.fail("DepthToSpace mode CRD is not supported")
    return ctx.b.op("SpaceToDepth", [g], blocksize=bs)
