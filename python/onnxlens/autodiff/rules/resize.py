"""Resize (every opset and input form, '' optional inputs included) and Upsample.

Nearest and linear (and cubic) resizing are separable linear maps along each resized axis. The
per-axis matrix A (out x in) is obtained exactly as ONNX Runtime computes it by running the node's
own attributes on an identity matrix once at build time (scale 1 on the other axis is exact for
every coordinate mode), so the backward follows ORT's semantics for every attribute combination.
The backward applies A^T along each axis with MatMul: g @ A_w for the last axis and A_h^T @ g for
the one before. Nearest upsampling by an integer factor, which is block repetition, becomes
Reshape + ReduceSum over the blocks instead.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

from ..registry import RuleContext, deflinear


def _probe_matrix(
    ctx: RuleContext, rank: int, axis: int, n_in: int, n_out: int, scale: float | None
) -> np.ndarray:
    """A (n_out x n_in) for one axis, computed by ORT with the node's attributes."""
    other = axis - 1 if axis == rank - 1 else axis + 1
    in_shape = [1] * rank
    in_shape[axis], in_shape[other] = n_in, n_in
    out_shape = list(in_shape)
    out_shape[axis] = n_out
    attrs = [a for a in ctx.node.attribute]
    op = ctx.node.op_type
    inits = []
    inputs = ["x"]
    if op == "Upsample" or ctx.opset < 11:
        scales = np.ones(rank, np.float32)
        scales[axis] = scale if scale is not None else n_out / n_in
        if op == "Upsample" and ctx.opset < 9:
            attrs = [a for a in attrs if a.name != "scales"] + [
                helper.make_attribute("scales", scales.tolist())
            ]
        else:
            inits.append(helper.make_tensor("scales", TensorProto.FLOAT, [rank], scales))
            inputs.append("scales")
    elif scale is not None:
        scales = np.ones(rank, np.float32)
        scales[axis] = scale
        inits += [
            helper.make_tensor("roi", TensorProto.FLOAT, [0], []),
            helper.make_tensor("scales", TensorProto.FLOAT, [rank], scales),
        ]
        inputs += ["roi", "scales"]
    else:
        inits += [
            helper.make_tensor("roi", TensorProto.FLOAT, [0], []),
            helper.make_tensor("scales", TensorProto.FLOAT, [0], []),
            helper.make_tensor("sizes", TensorProto.INT64, [rank], out_shape),
        ]
        inputs += ["roi", "scales", "sizes"]
    node = helper.make_node(op, inputs, ["y"])
    node.attribute.extend(a for a in attrs if a.name not in ("axes",))
    graph = helper.make_graph(
        [node],
        "probe",
        [
            helper.make_tensor_value_info(
                "x",
                TensorProto.DOUBLE
                if ctx.b.elem_type(ctx.x()) == TensorProto.DOUBLE
                else TensorProto.FLOAT,
                in_shape,
            )
        ],
        [
            helper.make_tensor_value_info(
                "y",
                TensorProto.DOUBLE
                if ctx.b.elem_type(ctx.x()) == TensorProto.DOUBLE
                else TensorProto.FLOAT,
                [None] * rank,
            )
        ],
        initializer=inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", ctx.opset)],
        ir_version=min(ctx.b.model.ir_version or 10, 10),
    )
    dt = np.float64 if ctx.b.elem_type(ctx.x()) == TensorProto.DOUBLE else np.float32
    eye = np.eye(n_in, dtype=dt)
    x = eye.reshape(in_shape) if axis < other else eye.T.reshape(in_shape)
    try:
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        y = sess.run(None, {"x": x})[0]
    except Exception as exc:
        ctx.fail(
            f"probing its interpolation with ONNX Runtime failed ({str(exc).splitlines()[0][:200]})"
        )
    y2 = y.reshape([d for i, d in enumerate(out_shape) if i in (axis, other)])
    # rows: output positions along `axis`; columns: the identity index = input position
    return (y2 if axis < other else y2.T).astype(np.float64)


def _scales_sizes(ctx: RuleContext, rank: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    b, op = ctx.b, ctx.node.op_type
    if op == "Upsample" and ctx.has_attr("scales"):
        return np.asarray(ctx.attr("scales"), np.float64), None
    if op == "Upsample" or ctx.opset < 11:
        v = b.constant_value(ctx.x(1))
        return (None if v is None else v.astype(np.float64)), None
    scales = b.constant_value(ctx.x(2)) if ctx.x(2) else None
    sizes = b.constant_value(ctx.x(3)) if len(ctx.inputs) > 3 and ctx.x(3) else None
    if scales is not None and scales.size == 0:
        scales = None
    if sizes is not None and sizes.size == 0:
        sizes = None
    axes = ctx.attr("axes")
    if axes is not None:  # opset 18: scales/sizes only for `axes`
        full_s = np.ones(rank) if scales is not None else None
        full_z = None
        for j, a in enumerate(axes):
            a = a + rank if a < 0 else a
            if full_s is not None and scales is not None:
                full_s[a] = scales[j]
        scales = full_s
        if sizes is not None:
            full_z = np.asarray(b.static_shape(ctx.y()) or [], dtype=object)
            sizes = full_z
    return scales, sizes


@deflinear("Resize", "Upsample")
def resize(ctx: RuleContext, g: str) -> str:
    b, x = ctx.b, ctx.x()
    mode = ctx.attr("mode", "nearest")
    if ctx.attr("coordinate_transformation_mode", "") == "tf_crop_and_resize":
        ctx.fail("coordinate_transformation_mode='tf_crop_and_resize' is not supported")
    if ctx.attr("keep_aspect_ratio_policy", "stretch") != "stretch":
        ctx.fail("keep_aspect_ratio_policy other than 'stretch' is not supported")
    rank = ctx.rank(x)
    xs = b.static_shape(x) or ()
    ys = b.static_shape(ctx.y()) or ()
    scales, _ = _scales_sizes(ctx, rank)
    resized = []
    for a in range(rank):
        si, so = xs[a] if a < len(xs) else None, ys[a] if a < len(ys) else None
        sc = float(scales[a]) if scales is not None and a < len(scales) else None
        if sc is not None and sc == 1.0:
            continue
        if si is not None and si == so and sc is None:
            continue
        if not (isinstance(si, int) and isinstance(so, int)):
            ctx.fail(
                f"the size of axis {a} before/after resizing is unknown ({si} -> {so}); pass input_shape=(N, C, H, W) "
                "to build_vjp (Model.gradient does this from the input) or export with a fixed input size"
            )
        resized.append((a, si, so, sc))
    if any(a < rank - 2 for a, *_ in resized):
        ctx.fail("only the last two axes may be resized (NCHW height/width)")
    out = g
    dt = b.np_dtype(x)
    for a, si, so, sc in sorted(resized, reverse=True):
        m = _probe_matrix(ctx, rank, a, si, so, sc)
        f = so // si if si and so % si == 0 else 0
        block = (
            f > 1 and mode == "nearest" and np.array_equal(m, np.kron(np.eye(si), np.ones((f, 1))))
        )
        if block:
            # Each input element was repeated f times along `a`: sum the blocks.
            if (
                a == rank - 2
            ):  # (..., so_h, w) -> (..., si_h, f, w) ; last axis keeps its current size
                shape = [0] * a + [si, f, -1]
            else:
                shape = [0] * a + [si, f]
            r = b.op("Reshape", [out, b.ints(shape)])
            out = b.reduce_sum(r, [a + 1], keepdims=False)
        elif a == rank - 1:
            out = b.op("MatMul", [out, b.const(m.astype(dt), hint="resize_At")])
        else:
            out = b.op("MatMul", [b.const(m.T.astype(dt), hint="resize_AT"), out])
    return out
