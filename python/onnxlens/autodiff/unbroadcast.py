"""The one un-broadcast helper: sum a gradient over the axes its primal operand was broadcast on."""

from __future__ import annotations

import numpy as np
from onnx import numpy_helper

from ..errors import UnsupportedOperatorError
from ..graph.builder import GraphBuilder
from ..graph.layers import Shape


def _same(a: object, b: object) -> bool:
    return a is not None and a == b


def _broadcast_axes(ts: Shape, os_: Shape) -> tuple[int, list[int]] | None:
    """(leading axes, reduced axes) when shapes say how `ts` was broadcast to `os_`, else None."""
    if ts is None or os_ is None or len(os_) < len(ts):
        return None
    lead = len(os_) - len(ts)
    axes = list(range(lead))
    for i, (td, od) in enumerate(zip(ts, os_[lead:], strict=True)):
        if _same(td, od):
            continue
        if td == 1:
            axes.append(lead + i)
            continue
        return None
    return lead, axes


def _per_axis(b: GraphBuilder, g: str, target: str, out: str) -> str:
    """Run-time un-broadcast before opset 13 (ReduceSum's axes an attribute): leading axes are
    summed statically; each axis whose size is open is summed (ReduceSum keepdims) and then
    chosen at run time, Where(target dim == 1, sum, g), cut to the target's size along that axis
    with a Slice whose end is read off Shape(target) (the sum broadcast by Where, or g whole).
    Needs the ranks, Where (opset 9) and Slice's inputs (10)."""
    ts, os_ = b.static_shape(target), b.static_shape(out)
    if ts is None or os_ is None or len(os_) < len(ts) or b.opset < 10:
        raise UnsupportedOperatorError(
            f"cannot tell how {target!r} was broadcast to {out!r}: shape inference leaves it open, "
            "the model's input size is not known when the graph is built, and run-time un-broadcast "
            f"needs {'the ranks' if b.opset >= 10 else 'opset >= 10'} (the model has opset {b.opset}). "
            "Pass input_shape=(N, C, H, W) to build_vjp (Model.gradient and Model.vjp do this from "
            "the input array), or convert the model with onnx.version_converter.convert_version(model, 13)."
        )
    lead = len(os_) - len(ts)
    if lead:
        g = b.reduce_sum(g, list(range(lead)), keepdims=False)
    tshape = b.shape(target)
    for i, (td, od) in enumerate(zip(ts, os_[lead:], strict=True)):
        if _same(td, od) or (isinstance(td, int) and td > 1) or od == 1:
            continue  # not broadcast along i: a static size > 1 is the output's own
        red = b.reduce_sum(g, [i], keepdims=True)
        if td == 1:
            g = red
            continue
        dim = b.op("Gather", [tshape, b.ints([i])], axis=0)
        is_one = b.op("Equal", [dim, b.ints([1])])
        g = b.op("Where", [is_one, red, g])
        g = b.op("Slice", [g, b.ints([0]), dim, b.ints([i])])
    return g


def unbroadcast(b: GraphBuilder, g: str, target: str, out: str) -> str:
    """Reduce `g` (shaped like primal tensor `out`) to the shape of primal tensor `target`.

    When shape inference says which axes were broadcast (leading axes, or static 1 against
    anything else), one ReduceSum (+ Reshape when leading axes go) is emitted, or nothing at all.
    When it cannot tell (symbolic dims it did not unify), the dims read off a run of the model
    decide (`GraphBuilder.probed_shape`: possible whenever the non-batch input dims are known,
    which Model's entry points pin from the array they are given). Otherwise the axes are found
    at run time with Shape ops (Equal/NonZero), which keeps a dynamic batch working; before opset
    13 (no axes input) one open axis at a time (`_per_axis`).
    """
    found = _broadcast_axes(b.static_shape(target), b.static_shape(out))
    if found is None and b.opset < 13:  # from 13 on the exact run-time form below is available
        found = _broadcast_axes(b.probed_shape(target), b.probed_shape(out))
    if found is not None:
        lead, axes = found
        if not axes:
            return g
        red = b.reduce_sum(g, axes, keepdims=True)
        return b.reshape_like(red, target) if lead else red
    if b.opset < 13:
        return _per_axis(b, g, target, out)
    rank_out = b.rank(out)
    rank_t = b.rank(target)
    tshape = b.shape(target)
    if rank_out is not None and rank_t is not None and rank_out > rank_t:
        tshape = b.op("Concat", [b.ints([1] * (rank_out - rank_t)), tshape], axis=0)
    elif rank_out is None or rank_t is None:
        # Rank unknown: pad with ones to the gradient's rank at run time.
        gshape = b.shape(g)
        diff = b.op("Sub", [b.op("Size", [gshape]), b.op("Size", [tshape])])
        ones = b.op(
            "ConstantOfShape",
            [b.unsqueeze(diff, [0])],
            value=numpy_helper.from_array(np.ones(1, "int64")),
        )
        tshape = b.op("Concat", [ones, tshape], axis=0)
    neq = b.op("Not", [b.op("Equal", [tshape, b.shape(g)])])
    axes_t = b.op("Reshape", [b.op("NonZero", [neq]), b.ints([-1])])
    red = b.reduce_sum_dynamic(g, axes_t, keepdims=True)
    return b.op("Reshape", [red, b.shape(target)])
