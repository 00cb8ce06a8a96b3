"""Shared helpers for the autodiff tests: single-op models and the directional-derivative check.

check_vjp compares `<c, (f(x + eps t) - f(x - eps t)) / (2 eps)>` (central differences along a
random direction t, random cotangent c) with `<vjp(c), t>` from the VJP graph run by ORT.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from onnxlens.autodiff import build_vjp
from onnxlens.graph import add_outputs

IR_VERSION = 10


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = 2
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def op_model(
    op_type: str,
    inputs: Mapping[str, Sequence[int | str]],
    attrs: Mapping | None = None,
    consts: Mapping[str, np.ndarray] | None = None,
    order: Sequence[str] | None = None,
    opset: int = 17,
    dtype: int = TensorProto.DOUBLE,
    n_outputs: int = 1,
) -> onnx.ModelProto:
    """A one-node model: graph inputs `inputs` (name -> shape), constant inputs `consts`,
    node inputs in `order` (default: inputs then consts; '' for an empty optional input)."""
    consts = dict(consts or {})
    order = list(order) if order is not None else list(inputs) + list(consts)
    outs = [f"y{i}" for i in range(n_outputs)]
    node = helper.make_node(op_type, order, outs, name=f"{op_type.lower()}_node", **(attrs or {}))
    graph = helper.make_graph(
        [node],
        f"{op_type}_test",
        [helper.make_tensor_value_info(k, dtype, list(v)) for k, v in inputs.items()],
        [helper.make_tensor_value_info(o, TensorProto.UNDEFINED, None) for o in outs],
        initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items()],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=IR_VERSION
    )
    model = onnx.shape_inference.infer_shapes(model, data_prop=True)
    # Declared output types for ORT (inferred ones).
    infos = {v.name: v for v in model.graph.value_info}
    for o in model.graph.output:
        if o.name in infos:
            o.CopyFrom(infos[o.name])
    onnx.checker.check_model(model)
    return model


def check_vjp(
    model: onnx.ModelProto,
    feeds: Mapping[str, np.ndarray],
    wrt: Sequence[str] | None = None,
    seeds: Sequence[str] | None = None,
    rules: str = "default",
    eps: float | None = None,
    rtol: float | None = None,
    atol: float = 0.0,
    seed: int = 0,
    cotangents: Mapping[str, np.ndarray] | None = None,
) -> tuple[float, float]:
    """Assert the VJP graph's directional derivative matches central differences; returns both."""
    rng = np.random.default_rng(seed)
    wrt = list(wrt or [k for k, v in feeds.items() if v.dtype.kind == "f"])
    seeds = list(seeds or [o.name for o in model.graph.output])
    is64 = all(feeds[w].dtype == np.float64 for w in wrt)
    eps = eps if eps is not None else (1e-6 if is64 else 1e-2)
    rtol = rtol if rtol is not None else (1e-6 if is64 else 2e-2)
    fwd = session(add_outputs(model, seeds))
    outs0 = dict(zip(seeds, fwd.run(seeds, dict(feeds)), strict=True))
    cts = {
        s: np.asarray(
            cotangents[s] if cotangents and s in cotangents else rng.standard_normal(outs0[s].shape)
        ).astype(outs0[s].dtype)
        for s in seeds
    }
    dirs = {w: np.asarray(rng.standard_normal(feeds[w].shape)).astype(feeds[w].dtype) for w in wrt}

    def f(sign: float) -> float:
        shifted = dict(feeds)
        for w in wrt:
            shifted[w] = np.asarray(feeds[w].astype(np.float64) + sign * eps * dirs[w]).astype(
                feeds[w].dtype
            )
        outs = fwd.run(seeds, shifted)
        return float(
            sum(
                np.sum(cts[s].astype(np.float64) * o.astype(np.float64))
                for s, o in zip(seeds, outs, strict=True)
            )
        )

    fd = (f(1.0) - f(-1.0)) / (2 * eps)
    vg = build_vjp(model, seeds, wrt, rules=rules)
    sess = session(vg.proto)
    run_feeds = dict(feeds)
    for s in seeds:
        run_feeds[vg.seed_inputs[s]] = cts[s]
    names = [vg.grad_outputs[w] for w in wrt]
    grads = sess.run(names, run_feeds)
    for w, gr in zip(wrt, grads, strict=True):
        assert gr.shape == feeds[w].shape, (w, gr.shape, feeds[w].shape)
    ad = float(
        sum(np.sum(gr.astype(np.float64) * dirs[w]) for w, gr in zip(wrt, grads, strict=True))
    )
    scale = max(abs(fd), abs(ad), 1e-12)
    assert abs(fd - ad) <= rtol * scale + atol, (
        f"finite differences {fd!r} vs vjp {ad!r} (rel err {abs(fd - ad) / scale:.3g})"
    )
    return fd, ad


def to_float64(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy with float32 initializers, Constant values, casts and graph I/O turned into float64:
    run by onnx.reference (ORT lacks float64 kernels for Conv, pools, Resize, ...)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for t in m.graph.initializer:
        if t.data_type == TensorProto.FLOAT:
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float64), t.name))
    for n in m.graph.node:
        for a in n.attribute:
            if (
                a.name == "value"
                and a.type == onnx.AttributeProto.TENSOR
                and a.t.data_type == TensorProto.FLOAT
            ):
                a.t.CopyFrom(
                    numpy_helper.from_array(numpy_helper.to_array(a.t).astype(np.float64), a.t.name)
                )
            if a.name == "to" and a.i == TensorProto.FLOAT:
                a.i = TensorProto.DOUBLE
    for v in list(m.graph.input) + list(m.graph.output) + list(m.graph.value_info):
        if v.type.tensor_type.elem_type == TensorProto.FLOAT:
            v.type.tensor_type.elem_type = TensorProto.DOUBLE
    return m


def reference_evaluator(model: onnx.ModelProto):
    """onnx.reference.ReferenceEvaluator with inference-mode BatchNormalization: its
    BatchNormalization-9 implementation switches to training mode (batch statistics) whenever
    `momentum` is set, which the schema defaults to 0.9; ORT and the spec's inference use the
    running statistics."""
    from onnx.reference import ReferenceEvaluator
    from onnx.reference.op_run import OpRun

    class BatchNormalization(OpRun):
        def _run(
            self, x, scale, bias, mean, var, epsilon=None, momentum=None, training_mode=None, **_
        ):
            shape = (-1,) + (1,) * (x.ndim - 2)
            eps = 1e-5 if epsilon is None else epsilon
            y = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps) * scale.reshape(
                shape
            ) + bias.reshape(shape)
            return (y.astype(x.dtype),)

    return ReferenceEvaluator(model, new_ops=[BatchNormalization])


def check_vjp_reference(
    model: onnx.ModelProto,
    feeds: Mapping[str, np.ndarray],
    wrt: Sequence[str],
    seeds: Sequence[str],
    eps: float = 1e-6,
    rtol: float = 1e-6,
    seed: int = 0,
) -> tuple[float, float]:
    """check_vjp in float64 through onnx.reference: both the model and its VJP graph run in
    double, so the directional derivative is checked to ~1e-6 even for float32-only ORT ops."""
    rng = np.random.default_rng(seed)
    m64 = to_float64(model)
    feeds = {k: v.astype(np.float64) for k, v in feeds.items()}
    fwd = reference_evaluator(add_outputs(m64, seeds))
    outs0 = dict(zip(seeds, fwd.run(list(seeds), feeds), strict=True))
    cts = {s: rng.standard_normal(outs0[s].shape) for s in seeds}
    dirs = {w: rng.standard_normal(feeds[w].shape) for w in wrt}

    def f(sign: float) -> float:
        shifted = {k: (v + sign * eps * dirs[k] if k in dirs else v) for k, v in feeds.items()}
        return float(
            sum(
                np.sum(cts[s] * o)
                for s, o in zip(seeds, fwd.run(list(seeds), shifted), strict=True)
            )
        )

    fd = (f(1.0) - f(-1.0)) / (2 * eps)
    vg = build_vjp(m64, seeds, wrt)
    run = dict(feeds)
    for s in seeds:
        run[vg.seed_inputs[s]] = cts[s]
    grads = reference_evaluator(vg.proto).run([vg.grad_outputs[w] for w in wrt], run)
    ad = float(sum(np.sum(g * dirs[w]) for w, g in zip(wrt, grads, strict=True)))
    scale = max(abs(fd), abs(ad), 1e-12)
    assert abs(fd - ad) <= rtol * scale, (
        f"finite differences {fd!r} vs vjp {ad!r} (rel err {abs(fd - ad) / scale:.3g})"
    )
    return fd, ad
