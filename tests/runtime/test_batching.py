"""runtime.batching: batched runs against one run over all samples, static-batch padding,
`whole` outputs and the batch-size rules."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from onnxlens.runtime.batching import (
    batch_size_for,
    bytes_per_sample,
    run_batched,
    session_batch,
)
from synthetic import IR_VERSION, tiny_cnn


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


class _Counting:
    """A session wrapper recording the batch of every run (what run_batched really feeds)."""

    def __init__(self, session: ort.InferenceSession) -> None:
        self._s = session
        self.batches: list[dict[str, int]] = []

    def get_inputs(self) -> list[ort.NodeArg]:
        return self._s.get_inputs()

    def run(self, names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        self.batches.append({k: v.shape[0] for k, v in feeds.items()})
        return self._s.run(names, feeds)


def _x(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, 8, 8)).astype(np.float32)


def _with_shape_output(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model plus an output that is not per sample: Shape(x)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    m.graph.node.append(helper.make_node("Shape", ["x"], ["x_shape"]))
    m.graph.output.append(helper.make_tensor_value_info("x_shape", TensorProto.INT64, [4]))
    return m


@pytest.mark.parametrize(("n", "batch_size"), [(10, 3), (10, 10), (10, 16), (1, 4), (7, 1)])
def test_dynamic_batch_equals_one_big_run(n: int, batch_size: int) -> None:
    sess = _session(tiny_cnn())
    x = _x(n)
    (want,) = sess.run(["logits"], {"x": x})
    counting = _Counting(sess)
    (got,) = run_batched(counting, "x", x, ["logits"], batch_size)  # type: ignore[arg-type]
    assert got.shape == (n, 5)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    sizes = [b["x"] for b in counting.batches]
    assert sizes == [min(batch_size, n - s) for s in range(0, n, batch_size)]


def test_static_batch_pads_the_last_batch_and_drops_the_padding() -> None:
    static = _session(tiny_cnn(batch=4))
    assert session_batch(static, "x") == 4
    x = _x(10, seed=1)
    (want,) = _session(tiny_cnn(batch="N")).run(["logits"], {"x": x})  # same weights, dynamic
    counting = _Counting(static)
    (got,) = run_batched(counting, "x", x, ["logits"], 4)  # type: ignore[arg-type]
    assert [b["x"] for b in counting.batches] == [4, 4, 4]  # 4 + 4 + (2 real + 2 padding)
    assert got.shape == (10, 5)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_static_batch_given_explicitly() -> None:
    """`static_batch` pads even when the session's graph says the batch is dynamic (a model
    whose batch dim is pinned elsewhere)."""
    sess = _session(tiny_cnn())
    assert session_batch(sess, "x") is None
    x = _x(5, seed=2)
    (want,) = sess.run(["logits"], {"x": x})
    counting = _Counting(sess)
    (got,) = run_batched(counting, "x", x, ["logits"], 3, static_batch=3)  # type: ignore[arg-type]
    assert [b["x"] for b in counting.batches] == [3, 3]
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_extra_feeds_are_split_and_padded_with_the_input() -> None:
    """Per-sample extra feeds (cotangents, masks) follow the input's batches, padding included."""
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "m"], ["y"])],
        "mul",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 3]),
            helper.make_tensor_value_info("m", TensorProto.FLOAT, [4, 3]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 3])],
    )
    sess = _session(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=IR_VERSION)
    )
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 3)).astype(np.float32)
    m = rng.standard_normal((6, 3)).astype(np.float32)
    counting = _Counting(sess)
    (got,) = run_batched(counting, "x", x, ["y"], 4, extra={"m": m})  # type: ignore[arg-type]
    assert counting.batches == [{"x": 4, "m": 4}, {"x": 4, "m": 4}]
    np.testing.assert_array_equal(got, x * m)


def test_whole_outputs_come_from_the_first_run() -> None:
    sess = _session(_with_shape_output(tiny_cnn()))
    x = _x(7, seed=4)
    logits, shape = run_batched(sess, "x", x, ["logits", "x_shape"], 3, whole={"x_shape"})
    np.testing.assert_array_equal(shape, np.array([3, 3, 8, 8], np.int64))  # not concatenated
    (want,) = sess.run(["logits"], {"x": x})
    np.testing.assert_allclose(logits, want, rtol=1e-6, atol=1e-6)


def test_whole_outputs_are_not_cut_to_the_real_samples_of_a_padded_batch() -> None:
    sess = _session(_with_shape_output(tiny_cnn(batch=4)))
    logits, shape = run_batched(
        sess, "x", _x(2, seed=5), ["logits", "x_shape"], 4, whole={"x_shape"}
    )
    assert logits.shape == (2, 5)
    np.testing.assert_array_equal(shape, np.array([4, 3, 8, 8], np.int64))


def test_a_per_sample_output_without_whole_is_concatenated() -> None:
    """The contrast to `whole`: a shape output listed as per sample is stacked batch by batch."""
    sess = _session(_with_shape_output(tiny_cnn()))
    _, shape = run_batched(sess, "x", _x(5, seed=6), ["logits", "x_shape"], 3)
    np.testing.assert_array_equal(shape, np.array([3, 3, 8, 8, 2, 3, 8, 8], np.int64))


@pytest.mark.parametrize(
    ("per_sample", "limit", "static", "requested", "want"),
    [
        (100, 1000, 4, 16, 4),  # a static model batch wins over everything
        (100, 1000, 4, None, 4),
        (100, 1000, None, 16, 16),  # then the request
        (100, 1000, None, None, 10),  # then the memory bound
        (300, 1000, None, None, 3),  # rounded down
        (5000, 1000, None, None, 1),  # never below one sample
        (0, 1000, None, None, 1000),  # an unknown (zero) size counts as one byte
        (100, 1000, None, 0, 10),  # requested=0 means "not given"
    ],
)
def test_batch_size_for_precedence(
    per_sample: int, limit: int, static: int | None, requested: int | None, want: int
) -> None:
    assert batch_size_for(per_sample, limit, static, requested) == want


@pytest.mark.parametrize(
    ("shape", "fallback", "want"),
    [
        (("N", 3, 8, 8), 7, 4 * 3 * 8 * 8),
        ((2, 5), 7, 4 * 5),
        (("N", 3, "H", "W"), 7, 7),
        (("N", 3, None), 7, 7),
        (None, 7, 7),
        (("N", 0, 8), 7, 7),
    ],
)
def test_bytes_per_sample(shape: tuple | None, fallback: int, want: int) -> None:
    assert bytes_per_sample(shape, fallback) == want
