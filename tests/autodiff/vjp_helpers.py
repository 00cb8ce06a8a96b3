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
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=IR_VERSION)
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
        s: np.asarray(cotangents[s] if cotangents and s in cotangents else rng.standard_normal(outs0[s].shape)).astype(outs0[s].dtype)
        for s in seeds
    }
    dirs = {w: np.asarray(rng.standard_normal(feeds[w].shape)).astype(feeds[w].dtype) for w in wrt}

    def f(sign: float) -> float:
        shifted = dict(feeds)
        for w in wrt:
            shifted[w] = np.asarray(feeds[w].astype(np.float64) + sign * eps * dirs[w]).astype(feeds[w].dtype)
        outs = fwd.run(seeds, shifted)
        return float(sum(np.sum(cts[s].astype(np.float64) * o.astype(np.float64)) for s, o in zip(seeds, outs, strict=True)))

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
    ad = float(sum(np.sum(gr.astype(np.float64) * dirs[w]) for w, gr in zip(wrt, grads, strict=True)))
    scale = max(abs(fd), abs(ad), 1e-12)
    assert abs(fd - ad) <= rtol * scale + atol, f"finite differences {fd!r} vs vjp {ad!r} (rel err {abs(fd - ad) / scale:.3g})"
    return fd, ad
