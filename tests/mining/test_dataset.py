"""Datasets: folder trees, list files and parquet give the same deterministic items; bad files skip."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from mining_data import photo_crops, write_folder
from onnxlens.errors import ConfigurationError, ImageError
from onnxlens.mining.dataset import open_dataset


def test_folder_is_recursive_sorted_and_relative(tmp_path: Path) -> None:
    names = write_folder(tmp_path, photo_crops(6, seed=4), subdirs=3)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / ".hidden").mkdir()
    cv2.imwrite(str(tmp_path / ".hidden" / "x.png"), np.zeros((4, 4, 3), np.uint8))
    ds = open_dataset(tmp_path)
    assert ds.names == names and ds.kind == "folder"
    assert [len(s) for s in ds.shards(4)] == [4, 2]
    assert ds.shards(4)[1].start == 4
    assert ds.folder_labels() == [n.split("/")[0] for n in names]
    assert ds.read(0).dtype == np.uint8 and ds.read(0).ndim == 3
    assert open_dataset(tmp_path).fingerprint() == ds.fingerprint()
    cv2.imwrite(str(tmp_path / "d0" / "new.png"), np.zeros((4, 4, 3), np.uint8))
    assert open_dataset(tmp_path).fingerprint() != ds.fingerprint()


def test_fingerprint_sees_a_file_rewritten_under_its_name(tmp_path: Path) -> None:
    """Resuming over images replaced in place would mix two datasets: size or mtime give it away."""
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((8, 8, 3), i, np.uint8))
    before = open_dataset(tmp_path).fingerprint()
    cv2.imwrite(
        str(tmp_path / "1.png"), np.random.default_rng(0).integers(0, 255, (9, 9, 3), np.uint8)
    )
    changed = open_dataset(tmp_path).fingerprint()
    assert changed != before
    st = os.stat(tmp_path / "2.png")  # same bytes, touched
    os.utime(tmp_path / "2.png", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert open_dataset(tmp_path).fingerprint() != changed
    assert open_dataset(tmp_path).fingerprint() == open_dataset(tmp_path).fingerprint()


def test_list_files_relative_to_the_list(tmp_path: Path) -> None:
    names = write_folder(tmp_path / "imgs", photo_crops(4, seed=5))
    (tmp_path / "list.txt").write_text(
        "# a comment\n" + "\n".join(f"imgs/{n}" for n in reversed(names)) + "\n\n"
    )
    ds = open_dataset(tmp_path / "list.txt")
    assert ds.names == [f"imgs/{n}" for n in reversed(names)]  # the list's order is kept
    np.testing.assert_array_equal(ds.read(0), open_dataset(tmp_path / "imgs").read(3))
    (tmp_path / "list.csv").write_text(
        "label,path\n" + "\n".join(f"x,imgs/{n}" for n in names) + "\n"
    )
    assert open_dataset(tmp_path / "list.csv").names == [f"imgs/{n}" for n in names]


def test_parquet_plain_and_huggingface_struct(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow", reason="parquet datasets need pyarrow (onnxlens[parquet])")
    pq = pytest.importorskip(
        "pyarrow.parquet", reason="parquet datasets need pyarrow (onnxlens[parquet])"
    )
    imgs = photo_crops(5, seed=6)
    blobs = [cv2.imencode(".png", im[:, :, ::-1])[1].tobytes() for im in imgs]
    blobs[2] = b"garbage"
    pq.write_table(
        pa.table(
            {
                "bytes": blobs,
                "path": [f"p/{i}.png" for i in range(5)],
                "label": ["a", "b", "a", "b", "a"],
            }
        ),
        tmp_path / "plain.parquet",
    )
    ds = open_dataset(tmp_path / "plain.parquet")
    assert ds.names == [f"p/{i}.png" for i in range(5)] and ds.folder_labels() == [
        "a",
        "b",
        "a",
        "b",
        "a",
    ]
    np.testing.assert_array_equal(ds.read(1), imgs[1])
    with pytest.raises(ImageError, match="row 2"):
        ds.read(2)
    struct = pa.array([{"bytes": b, "path": None} for b in blobs])
    pq.write_table(pa.table({"image": struct}), tmp_path / "hf.parquet")
    ds = open_dataset(tmp_path / "hf.parquet")
    assert ds.names[0] == "row-00000000"
    np.testing.assert_array_equal(ds.read(4), imgs[4])
    pq.write_table(pa.table({"pixels": [1, 2]}), tmp_path / "bad.parquet")
    with pytest.raises(ConfigurationError, match="no image column"):
        open_dataset(tmp_path / "bad.parquet")


def test_parquet_rows_get_the_file_checks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same bytes as a file and as a parquet row: an image over the pixel bound is shrunk
    identically, and empty or corrupt bytes are refused with the same reason (so mining skips
    both alike)."""
    pa = pytest.importorskip("pyarrow", reason="parquet datasets need pyarrow (onnxlens[parquet])")
    pq = pytest.importorskip(
        "pyarrow.parquet", reason="parquet datasets need pyarrow (onnxlens[parquet])"
    )
    monkeypatch.setattr("onnxlens.data.images.MAX_PIXELS", 1_000_000)
    yy, xx = np.mgrid[0:1400, 0:1100]
    big = np.stack([xx % 256, yy % 256, (xx + yy) % 256], -1).astype(np.uint8)  # 1.54 MP
    blobs = [
        cv2.imencode(".png", big[:, :, ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 1])[1].tobytes(),
        cv2.imencode(".png", photo_crops(1, seed=2)[0][:, :, ::-1])[1].tobytes(),
        b"",
        b"\x89PNG\r\n\x1a\n not the rest of a png",
    ]
    names = [f"f/{i}.png" for i in range(len(blobs))]
    for n, b in zip(names, blobs, strict=True):
        (tmp_path / n).parent.mkdir(exist_ok=True)
        (tmp_path / n).write_bytes(b)
    pq.write_table(pa.table({"path": names, "bytes": blobs}), tmp_path / "rows.parquet")
    files, rows = open_dataset(tmp_path / "f"), open_dataset(tmp_path / "rows.parquet")
    assert files.names == [n[2:] for n in names] and rows.names == names
    shrunk = rows.read(0)
    assert shrunk.shape[0] * shrunk.shape[1] <= 1_000_000 and shrunk.shape[0] > 1400 // 2
    np.testing.assert_array_equal(shrunk, files.read(0))
    np.testing.assert_array_equal(rows.read(1), files.read(1))
    for i in (2, 3):
        with pytest.raises(ImageError) as by_file:
            files.read(i)
        with pytest.raises(ImageError, match=rf"row {i} \('f/{i}.png'\)") as by_row:
            rows.read(i)
        # the same check fired: only the name of the source differs
        why_file = str(by_file.value).replace(f"image {str(tmp_path / names[i])!r}", "SRC")
        why_row = str(by_row.value).replace(f"row {i} ({names[i]!r})", "SRC")
        assert why_row == why_file and "SRC" in why_row


def test_missing_and_empty_data(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        open_dataset(tmp_path / "nope")
    (tmp_path / "e").mkdir()
    with pytest.raises(
        ConfigurationError, match=r"holds no images: no file in its tree ends in \.jpg"
    ):
        open_dataset(tmp_path / "e")
    (tmp_path / "e.txt").write_text("# only a comment\n")
    with pytest.raises(ConfigurationError, match="the list names no paths"):
        open_dataset(tmp_path / "e.txt")
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(ConfigurationError, match="neither a folder"):
        open_dataset(tmp_path / "x.json")
