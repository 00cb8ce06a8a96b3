"""Top-k states: numpy reference = brute force; C++ = numpy; merge and serialise are exact."""

from __future__ import annotations

import numpy as np
import pytest

from onnxlens.mining.topk import NumpyTopK, core_topk_class, load_topk, new_topk

BACKENDS = ["numpy"] + (["core"] if core_topk_class() is not None else [])


def _brute(values: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    c = values.shape[1]
    out_v = np.full((c, k), np.nan, np.float32)
    out_i = np.full((c, k), -1, np.int64)
    for ch in range(c):
        ok = ~np.isnan(values[:, ch])
        v, i = values[ok, ch], ids[ok]
        order = np.lexsort((i, -v.astype(np.float64)))[:k]
        out_v[ch, : len(order)] = v[order]
        out_i[ch, : len(order)] = i[order]
    return out_v, out_i


def _stream(seed: int, n: int = 300, c: int = 7) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 12, size=(n, c)).astype(np.float32)  # many ties
    values[rng.random((n, c)) < 0.05] = np.nan
    ids = rng.permutation(n * 3)[:n].astype(np.int64)
    payload = rng.integers(0, 50, size=(n, c, 2)).astype(np.int32)
    return values, ids, payload


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("batch", [1, 17, 300])
@pytest.mark.parametrize("k", [1, 5, 400])
def test_stream_equals_brute_force(backend: str, batch: int, k: int) -> None:
    values, ids, payload = _stream(batch + k)
    st = new_topk(values.shape[1], k, 2, backend)
    for s in range(0, len(ids), batch):
        st.update(
            np.ascontiguousarray(values[s : s + batch]),
            ids[s : s + batch],
            np.ascontiguousarray(payload[s : s + batch]),
        )
    want_v, want_i = _brute(values, ids, k)
    np.testing.assert_array_equal(st.values(), want_v)
    np.testing.assert_array_equal(st.ids(), want_i)
    np.testing.assert_array_equal(st.counts(), np.minimum(k, (~np.isnan(values)).sum(0)))
    # payload travels with its entry
    where = {int(i): r for r, i in enumerate(ids)}
    for ch in range(values.shape[1]):
        for slot, i in enumerate(st.ids()[ch]):
            if i >= 0:
                np.testing.assert_array_equal(st.payload()[ch, slot], payload[where[int(i)], ch])


@pytest.mark.parametrize("backend", BACKENDS)
def test_merge_of_shards_in_any_order_equals_one_stream(backend: str) -> None:
    values, ids, payload = _stream(7)
    one = new_topk(7, 9, 2, backend)
    one.update(values, ids, payload)
    parts = []
    for s in range(0, 300, 64):
        p = new_topk(7, 9, 2, backend)
        p.update(values[s : s + 64], ids[s : s + 64], payload[s : s + 64])
        parts.append(p)
    for order in (range(len(parts)), reversed(range(len(parts)))):
        total = new_topk(7, 9, 2, backend)
        for j in order:
            total.merge(load_topk(parts[j].serialise()))
        for f in ("values", "ids", "payload", "counts"):
            np.testing.assert_array_equal(getattr(total, f)(), getattr(one, f)())


@pytest.mark.skipif("core" not in BACKENDS, reason="onnxlens._core.TopK not built")
def test_core_equals_numpy_reference() -> None:
    values, ids, payload = _stream(11, n=2000, c=33)
    a, b = new_topk(33, 16, 2, "core"), NumpyTopK(33, 16, 2)
    for s in range(0, 2000, 128):
        a.update(values[s : s + 128], ids[s : s + 128], payload[s : s + 128])
        b.update(values[s : s + 128], ids[s : s + 128], payload[s : s + 128])
    for f in ("values", "ids", "payload", "counts"):
        np.testing.assert_array_equal(getattr(a, f)(), getattr(b, f)())
