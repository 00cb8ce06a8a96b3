"""runtime.session: typed graph keys, the LRU session cache, and make_session's errors."""

from __future__ import annotations

import dataclasses
import gc

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from onnxlens.errors import ModelLoadError, UnsupportedOperatorError
from onnxlens.model.memory import release_freed_memory, rss_bytes
from onnxlens.runtime import run_batched
from onnxlens.runtime.session import GraphKey, SessionCache, make_session
from synthetic import IR_VERSION, tiny_cnn


def test_graph_keys_compare_by_value() -> None:
    a = GraphKey("taps", ("conv_out", "relu_out"))
    assert a == GraphKey("taps", ("conv_out", "relu_out"))
    assert hash(a) == hash(GraphKey("taps", ("conv_out", "relu_out")))
    assert a != GraphKey("taps", ("relu_out", "conv_out"))  # parts are ordered
    assert a != GraphKey("head", ("conv_out", "relu_out"))
    assert a != GraphKey("taps", ("conv_out", "relu_out"), batch=4)
    assert GraphKey("plain") == GraphKey("plain", (), None)
    table = {a: 1, GraphKey("taps", ("conv_out", "relu_out"), batch=4): 2}
    assert table[GraphKey("taps", ("conv_out", "relu_out"))] == 1
    assert len({GraphKey("plain"), GraphKey("plain"), GraphKey("vjp", (("x",),))}) == 2


def test_graph_keys_are_frozen() -> None:
    key = GraphKey("plain")
    with pytest.raises(dataclasses.FrozenInstanceError):
        key.kind = "taps"  # type: ignore[misc]


class _Builds:
    """A build callback that counts its calls (each call means a new session)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> onnx.ModelProto:
        self.calls += 1
        return tiny_cnn()


def test_cache_builds_each_key_once() -> None:
    cache = SessionCache("cpu", threads=1, maxsize=4)
    build = _Builds()
    first = cache.get(GraphKey("plain"), build)
    assert cache.get(GraphKey("plain"), build) is first
    assert build.calls == 1
    other = cache.get(GraphKey("plain", batch=2), build)
    assert other is not first
    assert build.calls == 2
    assert len(cache) == 2
    x = np.zeros((2, 3, 8, 8), np.float32)
    np.testing.assert_array_equal(first.run(None, {"x": x})[0], other.run(None, {"x": x})[0])


def test_cache_evicts_the_least_recently_used() -> None:
    cache = SessionCache("cpu", threads=1, maxsize=2)
    builds = {name: _Builds() for name in "abc"}
    keys = {name: GraphKey("taps", (name,)) for name in "abc"}
    cache.get(keys["a"], builds["a"])
    cache.get(keys["b"], builds["b"])
    cache.get(keys["a"], builds["a"])  # a is now the most recent; b the least
    cache.get(keys["c"], builds["c"])
    assert len(cache) == 2
    cache.get(keys["a"], builds["a"])
    cache.get(keys["c"], builds["c"])
    assert (builds["a"].calls, builds["c"].calls) == (1, 1)  # both still cached
    cache.get(keys["b"], builds["b"])
    assert builds["b"].calls == 2  # b was evicted and is rebuilt
    assert len(cache) == 2


def test_cache_clear() -> None:
    cache = SessionCache("cpu", threads=1)
    build = _Builds()
    cache.get(GraphKey("plain"), build)
    cache.clear()
    assert len(cache) == 0
    cache.get(GraphKey("plain"), build)
    assert build.calls == 2


@pytest.mark.parametrize("key", ["plain", ("taps", ("a",)), 3, None])
def test_cache_refuses_keys_that_are_not_graph_keys(key: object) -> None:
    cache = SessionCache("cpu", threads=1)
    build = _Builds()
    with pytest.raises(TypeError, match="GraphKey"):
        cache.get(key, build)  # type: ignore[arg-type]
    assert build.calls == 0
    assert len(cache) == 0


def test_make_session_runs_a_model_from_proto_or_bytes() -> None:
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    a = make_session(tiny_cnn(), "cpu", threads=1).run(None, {"x": x})[0]
    b = make_session(tiny_cnn().SerializeToString(), "cpu", threads=1).run(None, {"x": x})[0]
    np.testing.assert_array_equal(a, b)
    assert a.shape == (2, 5)


def test_an_operator_without_a_kernel_is_unsupported_operator_error() -> None:
    """ORT has no int64 Relu kernel on the CPU (the schema allows it)."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"], name="int_relu")],
        "int_relu",
        [helper.make_tensor_value_info("x", TensorProto.INT64, [2])],
        [helper.make_tensor_value_info("y", TensorProto.INT64, [2])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=IR_VERSION
    )
    onnx.checker.check_model(model)
    with pytest.raises(UnsupportedOperatorError, match=r"Relu") as info:
        make_session(model, "cpu")
    assert "ONNX Runtime" in str(info.value)


@pytest.mark.parametrize(
    "data",
    [b"this is not a model", b"\x08\x07" + b"\xff" * 16, tiny_cnn().SerializeToString()[:-40]],
    ids=["text", "garbage", "truncated"],
)
def test_a_corrupt_model_is_model_load_error(data: bytes) -> None:
    with pytest.raises(ModelLoadError, match="could not load the model"):
        make_session(data, "cpu")


def test_an_invalid_graph_is_model_load_error() -> None:
    """Sin has no int32 form in the schema: ORT refuses the graph, not a kernel."""
    graph = helper.make_graph(
        [helper.make_node("Sin", ["x"], ["y"])],
        "bad_type",
        [helper.make_tensor_value_info("x", TensorProto.INT32, [2])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [2])],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=IR_VERSION
    )
    with pytest.raises(ModelLoadError, match=r"plain onnxruntime\.InferenceSession"):
        make_session(model, "cpu")


def test_results_do_not_keep_a_deleted_sessions_arena() -> None:
    """An array ORT returns keeps its session's memory arena alive (its buffer lives there):
    results that outlive their session are copies (`detached`, which `run_batched` applies).
    A graph with a 400 MB intermediate and an 8-byte output, four sessions made, run and
    deleted, their outputs kept: the process grows by far less than one arena."""
    g = helper.make_graph(
        [
            helper.make_node("Tile", ["x", "reps"], ["big"]),
            helper.make_node("Relu", ["big"], ["big2"]),
            helper.make_node("ReduceSum", ["big2", "axis"], ["y"], keepdims=1),
        ],
        "arena",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1000])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])],
        [
            helper.make_tensor("reps", TensorProto.INT64, [2], [1, 100000]),
            helper.make_tensor("axis", TensorProto.INT64, [1], [1]),
        ],
    )
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=IR_VERSION)
    onnx.checker.check_model(model)
    before = rss_bytes()
    if before is None:
        pytest.skip("needs /proc/self/status to read the resident set")
    kept = []
    for _ in range(4):
        sess = make_session(model, "cpu", threads=1)
        (y,) = run_batched(sess, "x", np.ones((1, 1000), np.float32), ["y"], batch_size=1)
        kept.append(y)
        del sess
        gc.collect()
        release_freed_memory()
    assert all(y.base is None for y in kept)
    np.testing.assert_allclose([float(y[0, 0]) for y in kept], 1e8, rtol=1e-3)
    assert rss_bytes() - before < 200e6
