"""The one un-broadcast helper: sum a gradient over the axes its primal operand was broadcast on."""

from __future__ import annotations

import numpy as np
from onnx import numpy_helper

from ..errors import UnsupportedOperatorError
from ..graph.builder import GraphBuilder


def _same(a: object, b: object) -> bool:
    return a is not None and a == b


def unbroadcast(b: GraphBuilder, g: str, target: str, out: str) -> str:
    """Reduce `g` (shaped like primal tensor `out`) to the shape of primal tensor `target`.

    When shape inference says which axes were broadcast (leading axes, or static 1 against
    anything else), one ReduceSum (+ Reshape when leading axes go) is emitted, or nothing at all.
    Otherwise the axes are found at run time with Shape ops (Equal/NonZero), which keeps a dynamic
    batch working; that needs opset >= 13 for ReduceSum's axes input.
    """
    ts, os_ = b.static_shape(target), b.static_shape(out)
    if ts is not None and os_ is not None and len(os_) >= len(ts):
        lead = len(os_) - len(ts)
        axes = list(range(lead))
        ok = True
        for i, (td, od) in enumerate(zip(ts, os_[lead:], strict=True)):
            if _same(td, od):
                continue
            if td == 1:
                axes.append(lead + i)
                continue
            ok = False
            break
        if ok:
            if not axes:
                return g
            red = b.reduce_sum(g, axes, keepdims=True)
            return b.reshape_like(red, target) if lead else red
    if b.opset < 13:
        raise UnsupportedOperatorError(
            f"cannot tell statically how {target!r} was broadcast to {out!r}, and run-time un-broadcast "
            f"needs opset >= 13 (the model has {b.opset}). Pass input_shape= to build_vjp, or convert the "
            "model with onnx.version_converter.convert_version(model, 13)."
        )
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
