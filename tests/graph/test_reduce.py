"""In-graph per-channel reductions equal numpy on the full feature maps, with a dynamic batch."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from mining_data import conv_model
from onnxlens.graph.reduce import add_channel_reductions, split_argmax
from onnxlens.graph.taps import add_outputs


def _run(model: onnx.ModelProto, names: list[str], x: np.ndarray) -> list[np.ndarray]:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(names, {"x": x})


@pytest.mark.parametrize("opset", [13, 18])
@pytest.mark.parametrize("score", ["max", "mean"])
@pytest.mark.parametrize("batch", [1, 3])
def test_reductions_match_numpy(opset: int, score: str, batch: int) -> None:
    model = conv_model(size=20, seed=3)
    model.opset_import[0].version = opset
    full = _run(
        add_outputs(model, ["c1", "r2"]),
        ["c1", "r2"],
        x := np.random.default_rng(batch).normal(size=(batch, 3, 20, 20)).astype(np.float32),
    )
    reduced, red = add_channel_reductions(model, ["c1", "r2"], score)
    assert {o.name for o in reduced.graph.output} == {
        n for r in red.values() for n in (r.score, r.argmax, r.shape)
    }
    for name, act in zip(["c1", "r2"], full, strict=True):
        r = red[name]
        s, a, shape = _run(reduced, [r.score, r.argmax, r.shape], x)
        flat = act.reshape(batch, act.shape[1], -1)
        want = flat.max(-1) if score == "max" else flat.mean(-1)
        np.testing.assert_allclose(s, want, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(a, flat.argmax(-1))
        np.testing.assert_array_equal(shape, act.shape)
        pos = split_argmax(a, shape)
        assert pos.dtype == np.int32 and pos.shape == (batch, act.shape[1], 2)
        rows, cols = np.unravel_index(flat.argmax(-1), act.shape[2:])
        np.testing.assert_array_equal(pos[..., 0], rows)
        np.testing.assert_array_equal(pos[..., 1], cols)


def test_prunes_the_head_and_never_mutates_the_input() -> None:
    model = conv_model()
    before = model.SerializeToString()
    reduced, _ = add_channel_reductions(model, ["r1"], "max")
    assert model.SerializeToString() == before
    ops = [n.op_type for n in reduced.graph.node]
    assert "MatMul" not in ops and "GlobalAveragePool" not in ops and "Conv" in ops
    assert {t.name for t in reduced.graph.initializer} >= {"w1", "b1"}
    assert "w2" not in {t.name for t in reduced.graph.initializer}


def test_keep_outputs_and_vectors() -> None:
    model = conv_model()
    reduced, red = add_channel_reductions(model, ["logits"], "max", keep_outputs=["logits"])
    x = np.random.default_rng(0).normal(size=(2, 3, 32, 32)).astype(np.float32)
    s, a, logits = _run(reduced, [red["logits"].score, red["logits"].argmax, "logits"], x)
    np.testing.assert_allclose(s, logits, rtol=1e-6)
    np.testing.assert_array_equal(a, 0)
