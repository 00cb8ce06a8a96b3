from __future__ import annotations

import pickle

import numpy as np
import pytest

from onnxlens._core import TopK


def brute_force(values: np.ndarray, ids: np.ndarray, k: int, payload: np.ndarray | None = None):
    """Per channel: the k best (value desc, id asc, payload asc) non-NaN entries."""
    c = values.shape[1]
    out_v = np.full((c, k), np.nan, np.float32)
    out_i = np.full((c, k), -1, np.int64)
    out_p = None if payload is None else np.full((c, k, payload.shape[2]), -1, np.int32)
    counts = np.zeros(c, np.int64)
    for ch in range(c):
        keep = ~np.isnan(values[:, ch])
        v, i = values[keep, ch], ids[keep]
        keys = [i, -v] if payload is None else [*payload[keep, ch].T[::-1], i, -v]
        order = np.lexsort(keys)[:k]
        counts[ch] = len(order)
        out_v[ch, : len(order)] = v[order]
        out_i[ch, : len(order)] = i[order]
        if payload is not None:
            out_p[ch, : len(order)] = payload[keep, ch][order]
    return out_v, out_i, out_p, counts


def stream(seed: int, n: int = 1000, c: int = 12, ties: bool = True):
    rng = np.random.default_rng(seed)
    if ties:  # few distinct values: many exact ties decided by id
        values = rng.integers(0, 20, (n, c)).astype(np.float32) / 4
    else:
        values = rng.standard_normal((n, c)).astype(np.float32)
    values[rng.random((n, c)) < 0.05] = np.nan
    ids = rng.permutation(n * 3)[:n].astype(np.int64)  # unique, not sorted
    return values, ids


def feed(t: TopK, values, ids, batch: int, payload=None) -> None:
    for s in range(0, len(ids), batch):
        sl = slice(s, s + batch)
        t.update(values[sl], ids[sl], None if payload is None else payload[sl])


def assert_state(t: TopK, v, i, counts) -> None:
    np.testing.assert_array_equal(t.values(), v)  # NaN == NaN in assert_array_equal
    np.testing.assert_array_equal(t.ids(), i)
    np.testing.assert_array_equal(t.counts(), counts)


@pytest.mark.parametrize("batch", [1, 7, 64, 1000])
@pytest.mark.parametrize("ties", [True, False])
def test_matches_brute_force(batch: int, ties: bool) -> None:
    values, ids = stream(batch, ties=ties)
    t = TopK(12, 16)
    feed(t, values, ids, batch)
    v, i, _, counts = brute_force(values, ids, 16)
    assert_state(t, v, i, counts)


def test_independent_of_update_order() -> None:
    values, ids = stream(11)
    ref = brute_force(values, ids, 5)
    rng = np.random.default_rng(0)
    for _ in range(5):
        perm = rng.permutation(len(ids))
        t = TopK(12, 5)
        feed(t, values[perm], ids[perm], int(rng.integers(1, 200)))
        assert_state(t, ref[0], ref[1], ref[3])


def test_partial_fill_and_nan_ignored() -> None:
    values = np.array([[1.0, np.nan], [np.nan, np.nan], [3.0, np.nan]], np.float32)
    t = TopK(2, 4)
    t.update(values, np.array([10, 11, 12], np.int64))
    np.testing.assert_array_equal(t.counts(), [2, 0])
    np.testing.assert_array_equal(t.values()[0], [3.0, 1.0, np.nan, np.nan])
    np.testing.assert_array_equal(t.ids(), [[12, 10, -1, -1], [-1, -1, -1, -1]])


def test_infinities_are_values() -> None:
    t = TopK(1, 2)
    t.update(np.array([[-np.inf], [np.inf], [0.0]], np.float32), np.array([1, 2, 3], np.int64))
    np.testing.assert_array_equal(t.values(), [[np.inf, 0.0]])


def test_merge_of_shards_is_exact() -> None:
    values, ids = stream(21, n=1500)
    shards = np.array_split(np.arange(1500), 4)
    states = []
    for s in shards:
        t = TopK(12, 8)
        feed(t, values[s], ids[s], 50)
        states.append(t)
    merged = TopK(12, 8)
    for s in reversed(states):
        merged.merge(s)
    v, i, _, counts = brute_force(values, ids, 8)
    assert_state(merged, v, i, counts)
    states[0].merge(states[0])  # self-merge duplicates entries but stays well-formed
    assert np.all(np.diff(states[0].values(), axis=1)[:, :-1] <= 0)
    with pytest.raises(ValueError, match=r"differ in \(channels, k, payload_size\)"):
        merged.merge(TopK(12, 9))


def test_payload_kept_alongside_ids() -> None:
    values, ids = stream(31, n=600, c=5)
    rng = np.random.default_rng(1)
    payload = rng.integers(0, 14, (600, 5, 2)).astype(np.int32)
    t = TopK(5, 6, payload_size=2)
    feed(t, values, ids, 33, payload=payload)
    v, i, p, counts = brute_force(values, ids, 6, payload)
    assert_state(t, v, i, counts)
    np.testing.assert_array_equal(t.payload(), p)
    # equal (value, id) pairs fall back to payload order: deterministic even with duplicate ids
    d = TopK(1, 2, payload_size=1)
    d.update(
        np.ones((3, 1), np.float32),
        np.zeros(3, np.int64),
        np.array([[[5]], [[2]], [[9]]], np.int32),
    )
    np.testing.assert_array_equal(d.payload()[0, :, 0], [2, 5])
    with pytest.raises(ValueError, match="pass payload"):
        t.update(values[:2], ids[:2])
    with pytest.raises(ValueError, match="payload_size=0"):
        TopK(5, 6).update(values[:2], ids[:2], payload[:2])
    with pytest.raises(ValueError, match=r"expected shape \(2, 5, 2\)"):
        t.update(values[:2], ids[:2], payload[:2, :, :1].copy())


def test_serialise_round_trip_and_pickle() -> None:
    values, ids = stream(41, n=300, c=4)
    payload = np.arange(300 * 4 * 3, dtype=np.int32).reshape(300, 4, 3)
    t = TopK(4, 7, payload_size=3)
    t.update(values, ids, payload)
    data = t.serialise()
    assert isinstance(data, bytes) and data[:6] == b"OLTOPK"
    for back in (TopK.deserialise(data), pickle.loads(pickle.dumps(t))):
        assert (back.channels, back.k, back.payload_size) == (4, 7, 3)
        assert_state(back, t.values(), t.ids(), t.counts())
        np.testing.assert_array_equal(back.payload(), t.payload())
        # resumes exactly: feeding more gives the same as the original fed the same
        more_v, more_i = stream(42, n=50, c=4)
        more_i = more_i + 10_000
        more_p = np.zeros((50, 4, 3), np.int32)
        back.update(more_v, more_i, more_p)
    ref = TopK(4, 7, payload_size=3)
    ref.update(values, ids, payload)
    ref.update(more_v, more_i, more_p)
    assert_state(back, ref.values(), ref.ids(), ref.counts())


def test_corrupted_bytes_give_clear_errors() -> None:
    t = TopK(3, 4)
    t.update(np.arange(12, dtype=np.float32).reshape(4, 3), np.arange(4, dtype=np.int64))
    data = t.serialise()
    with pytest.raises(ValueError, match="bad magic"):
        TopK.deserialise(b"PNG" + data[3:])
    with pytest.raises(ValueError, match="truncated"):
        TopK.deserialise(data[:5])
    with pytest.raises(ValueError, match="does not match the header"):
        TopK.deserialise(data[:-1])
    version = bytearray(data)
    version[8] = 9
    with pytest.raises(ValueError, match="unsupported format version 9"):
        TopK.deserialise(bytes(version))
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x40
    with pytest.raises(ValueError, match="checksum mismatch"):
        TopK.deserialise(bytes(flipped))
    shape = bytearray(data)
    shape[16:24] = (-1).to_bytes(8, "little", signed=True)
    with pytest.raises(ValueError, match="corrupt header"):
        TopK.deserialise(bytes(shape))


@pytest.mark.parametrize(("c", "k", "p"), [(0, 3, 0), (3, 0, 0), (3, 3, -1)])
def test_bad_construction(c: int, k: int, p: int) -> None:
    with pytest.raises(ValueError, match="channels >= 1, k >= 1"):
        TopK(c, k, p)
