"""The float32 masks of the activation rules: exact at and around their kinks.

`GraphBuilder.step` builds [t > a] from one HardSigmoid with a huge power-of-two slope (it keeps
ORT's NCHWc layout); these tests hold it to numpy's comparisons on the floats next to each
threshold, and the ReLU-family rules to torch autograd on inputs that sit exactly on the kinks.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from vjp_helpers import IR_VERSION, op_model, session

from onnxlens.autodiff import build_vjp
from onnxlens.graph.builder import GraphBuilder

torch = pytest.importorskip("torch", reason="torch (extra: demo) is the autograd reference")

F32 = np.float32


def _neighbours(a: float, n: int = 3) -> list[np.float32]:
    """a and the n floats on either side of it; for 0, the normal ones (a subnormal t against
    0 gets a fractional mask, as documented)."""
    out, lo, hi = [F32(a)], F32(a), F32(a)
    if a == 0:
        tiny = np.finfo(F32).tiny
        lo, hi = np.nextafter(-tiny, F32(0)), np.nextafter(tiny, F32(0))
    for _ in range(n):
        lo, hi = np.nextafter(lo, F32(-np.inf)), np.nextafter(hi, F32(np.inf))
        out += [lo, hi]
    return out


def _step_model(threshold: float, above: bool, inclusive: bool) -> tuple[onnx.ModelProto, str]:
    x = helper.make_tensor_value_info("t", TensorProto.FLOAT, ["N"])
    graph = helper.make_graph([], "step", [x], [])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = IR_VERSION
    b = GraphBuilder(model)
    out = b.step("t", threshold, above=above, inclusive=inclusive)
    model.graph.node.extend(b.nodes)
    model.graph.initializer.extend(b.initializers)
    model.graph.output.append(helper.make_tensor_value_info(out, TensorProto.FLOAT, ["N"]))
    return model, b.nodes[-1].op_type


@pytest.mark.parametrize("threshold", [0.0, 6.0, -3.0, 3.0, 1.0, -0.5, 1e-20, 3e30, -1e-30])
@pytest.mark.parametrize("above", [True, False])
@pytest.mark.parametrize("inclusive", [False, True])
def test_step_equals_comparison(threshold, above, inclusive):
    model, op = _step_model(threshold, above, inclusive)
    assert op == "HardSigmoid"
    tiny = np.finfo(F32).tiny  # the smallest normal float
    t = np.array(
        [
            *_neighbours(threshold),
            0.0,
            -0.0,
            tiny,
            -tiny,
            1.0,
            -1.0,
            7.5,
            -7.5,
            3e38,
            -3e38,
            np.inf,
            -np.inf,
        ],
        dtype=F32,
    )
    got = session(model).run(None, {"t": t})[0]
    a = F32(threshold)
    cmp = {
        (True, False): np.greater,
        (True, True): np.greater_equal,
        (False, False): np.less,
        (False, True): np.less_equal,
    }[(above, inclusive)]
    np.testing.assert_array_equal(got, cmp(t, a).astype(F32), err_msg=f"t={t}")


def test_step_other_types_compare():
    """Float64 has no HardSigmoid kernel in ORT: the mask is Cast(comparison) there."""
    x = helper.make_tensor_value_info("t", TensorProto.DOUBLE, ["N"])
    model = helper.make_model(
        helper.make_graph([], "g", [x], []), opset_imports=[helper.make_opsetid("", 17)]
    )
    b = GraphBuilder(model)
    b.step("t", 0.5, above=True, inclusive=True)
    assert [n.op_type for n in b.nodes] == ["GreaterOrEqual", "Cast"]


def _kinks(*points: float) -> np.ndarray:
    vals = [v for p in points for v in _neighbours(p, 2)]
    rng = np.random.default_rng(0)
    vals += list(rng.uniform(-8, 8, 40).astype(F32))
    return np.array(vals, dtype=F32).reshape(1, 1, -1)


CASES = [
    ("Relu", {}, {}, lambda x: torch.relu(x), (0.0,)),
    ("LeakyRelu", {"alpha": 0.1}, {}, lambda x: torch.nn.functional.leaky_relu(x, 0.1), (0.0,)),
    (
        "Clip",
        {},
        {"lo": np.array(0.0, F32), "hi": np.array(6.0, F32)},
        lambda x: torch.nn.functional.relu6(x),
        (0.0, 6.0),
    ),
    (
        "Clip",
        {},
        {"lo": np.array(-1.0, F32), "hi": np.array(1.0, F32)},
        lambda x: torch.nn.functional.hardtanh(x),
        (-1.0, 1.0),
    ),
    ("HardSwish", {}, {}, lambda x: torch.nn.functional.hardswish(x), (-3.0, 3.0, 0.0)),
    (
        "HardSigmoid",
        {"alpha": 1 / 6, "beta": 0.5},
        {},
        lambda x: torch.nn.functional.hardsigmoid(x),
        (-3.0, 3.0),
    ),
]


@pytest.mark.parametrize(
    ("op", "attrs", "consts", "ref", "points"),
    CASES,
    ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)],
)
def test_kinks_match_torch(op, attrs, consts, ref, points):
    x = _kinks(*points)
    m = op_model(op, {"x": [1, 1, x.shape[-1]]}, attrs, consts, dtype=TensorProto.FLOAT)
    vg = build_vjp(m, ["y0"], ["x"])
    assert not {"Greater", "Less", "Cast", "Where"} & {n.op_type for n in vg.proto.graph.node}
    c = np.random.default_rng(1).standard_normal(x.shape).astype(F32)
    got = session(vg.proto).run([vg.grad_outputs["x"]], {"x": x, vg.seed_inputs["y0"]: c})[0]
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    ref(xt).backward(torch.from_numpy(c))
    want = xt.grad.numpy()
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7, err_msg=f"x={x.ravel()}")
