"""Image datasets for mining: a folder tree, a list file, or a parquet file of encoded images.

Every dataset is an ordered list of items with stable integer ids (their index in that order) and
names relative to DATA (file paths relative to the folder or to the list file; for parquet, the
`path` column or `row-<index>`). The order is deterministic (sorted paths for folders, file order
for lists and parquet), so shard `s` is always items `[s*size, (s+1)*size)` and a resumed or
distributed run sees the same shards. Unreadable items raise ImageError from `read`; the engines
skip, count and list them.
"""

from __future__ import annotations

import csv
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..data.images import IMAGE_EXTENSIONS, decode_image, is_image_file, load_image
from ..errors import ConfigurationError, ImageError

LIST_SUFFIXES = (".txt", ".csv", ".lst", ".list")
PARQUET_SUFFIXES = (".parquet", ".pq")
BYTES_COLUMNS = ("bytes", "image_bytes", "image", "img", "data", "content")
PATH_COLUMNS = ("path", "filename", "file", "name", "id")


@dataclass(frozen=True)
class Shard:
    index: int
    start: int
    stop: int

    def __len__(self) -> int:
        return self.stop - self.start


class Dataset:
    """A deterministic, indexable list of images. `names[i]` is item i's path relative to DATA."""

    kind = "base"

    def __init__(self, source: Path, names: list[str], labels: list[str] | None = None) -> None:
        self.source = source
        self.names = names
        self.labels = labels

    def __len__(self) -> int:
        return len(self.names)

    def read(self, i: int) -> np.ndarray:
        """Item i as uint8 RGB (H, W, 3); ImageError when it is corrupt, empty or unreadable."""
        raise NotImplementedError

    def shards(self, size: int) -> list[Shard]:
        if size < 1:
            raise ConfigurationError(f"shard size must be >= 1, got {size}.")
        return [
            Shard(s, a, min(len(self), a + size)) for s, a in enumerate(range(0, len(self), size))
        ]

    def fingerprint(self) -> str:
        """Hash of the kind, the ordered names and each item's `_stamp`: a DATA whose listing or
        contents changed refuses to resume."""
        h = hashlib.sha256(self.kind.encode())
        for i, n in enumerate(self.names):
            h.update(n.encode("utf-8", "surrogateescape") + b"\0" + self._stamp(i) + b"\0")
        return h.hexdigest()

    def _stamp(self, i: int) -> bytes:
        """What identifies item i's contents without reading them (empty: the name is enough)."""
        return b""

    def folder_labels(self) -> list[str] | None:
        """Labels per item: the label column (parquet), else the first folder of each path when
        the items live in more than one folder, else None."""
        if self.labels is not None:
            return self.labels
        tops = [n.split("/", 1)[0] if "/" in n else "" for n in self.names]
        return tops if len(set(tops)) > 1 and all(tops) else None


class FileDataset(Dataset):
    """Image files under a root (a folder tree, or the folder of a list file)."""

    def __init__(self, source: Path, root: Path, names: list[str], kind: str) -> None:
        super().__init__(source, names)
        self.root = root
        self.kind = kind

    def _stamp(self, i: int) -> bytes:
        """Size and modification time: an image rewritten under the same name is a different item
        (one stat per file; a missing file stamps as such and fails later, when it is read)."""
        try:
            st = os.stat(self.root / self.names[i])
        except OSError:
            return b"missing"
        return f"{st.st_size}:{st.st_mtime_ns}".encode()

    def read(self, i: int) -> np.ndarray:
        try:
            return load_image(self.root / self.names[i])
        except ImageError:
            raise
        except (OSError, ValueError, cv2.error) as exc:
            raise ImageError(f"cannot read {self.names[i]!r}: {exc}") from exc


class ParquetDataset(Dataset):
    """Encoded images (PNG/JPEG/... bytes) in a parquet column, HuggingFace's {bytes, path} struct
    included. The table is memory-mapped, so only the rows a shard reads are paged in."""

    kind = "parquet"

    def fingerprint(self) -> str:
        """The names plus the parquet file's size and modification time."""
        st = os.stat(self.source)
        h = hashlib.sha256(super().fingerprint().encode())
        h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
        return h.hexdigest()

    def __init__(self, source: Path) -> None:
        try:
            import pyarrow.parquet as pq
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ConfigurationError(
                "reading a parquet dataset needs pyarrow; install it with `pip install pyarrow`."
            ) from exc
        try:
            table = pq.read_table(str(source), memory_map=True)
        except Exception as exc:  # pyarrow raises several classes for bad files
            raise ConfigurationError(f"cannot read parquet file {str(source)!r}: {exc}") from exc
        cols = table.column_names
        col = next((c for c in BYTES_COLUMNS if c in cols), None)
        if col is None:
            raise ConfigurationError(
                f"parquet file {str(source)!r} has no image column; expected one of {BYTES_COLUMNS} "
                f"holding encoded image bytes, got columns {cols}."
            )
        import pyarrow as pa

        data = table.column(col).combine_chunks()
        struct_path = None
        if pa.types.is_struct(data.type):
            if data.type.get_field_index("path") >= 0:
                struct_path = data.field("path")
            data = data.field("bytes")
        self._bytes = data
        pcol = next((c for c in PATH_COLUMNS if c in cols), None)
        raw_names = (
            table.column(pcol).to_pylist()
            if pcol
            else struct_path.to_pylist()
            if struct_path is not None
            else None
        )
        n = len(data)
        names = [
            str(raw_names[i])
            if raw_names is not None and raw_names[i] is not None
            else f"row-{i:08d}"
            for i in range(n)
        ]
        labels = [str(v) for v in table.column("label").to_pylist()] if "label" in cols else None
        super().__init__(source, names, labels)

    def read(self, i: int) -> np.ndarray:
        # The file decoder, so a row gets exactly a file's checks (empty, corrupt, pixel bound).
        blob = self._bytes[i].as_py()
        return decode_image(blob or b"", f"row {i} ({self.names[i]!r})")


def _walk(root: Path) -> list[str]:
    names: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel = Path(dirpath).relative_to(root)
        for f in filenames:
            if not f.startswith(".") and is_image_file(f):
                names.append((rel / f).as_posix())
    # Sort whole paths (not per folder) so the order is the same on every filesystem.
    return sorted(names)


def _read_list(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read the list file {str(path)!r}: {exc}") from exc
    names: list[str] = []
    if path.suffix.lower() == ".csv":
        rows = list(csv.reader(text.splitlines()))
        if not rows:
            return []
        header = [h.strip().lower() for h in rows[0]]
        col = next((header.index(c) for c in PATH_COLUMNS if c in header), None)
        body = rows[1:] if col is not None else rows
        col = col or 0
        names = [r[col].strip() for r in body if len(r) > col and r[col].strip()]
    else:
        names = [
            ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")
        ]
    return [Path(n).as_posix() for n in names]


def open_dataset(data: str | os.PathLike) -> Dataset:
    """The dataset at `data`: a folder (recursive, sorted), a .txt/.csv list of image paths
    (relative to the list's folder; a CSV takes its `path` column, else the first), or a parquet
    file of encoded images (column `bytes`/`image`, optional `path` and `label`)."""
    path = Path(data)
    if not path.exists():
        raise ConfigurationError(
            f"DATA {str(path)!r} does not exist; pass a folder, a .txt/.csv list or a .parquet file."
        )
    if path.is_dir():
        names = _walk(path)
        ds: Dataset = FileDataset(path, path, names, "folder")
    elif path.suffix.lower() in PARQUET_SUFFIXES:
        ds = ParquetDataset(path)
    elif path.suffix.lower() in LIST_SUFFIXES:
        ds = FileDataset(path, path.parent, _read_list(path), "list")
    else:
        raise ConfigurationError(
            f"DATA {str(path)!r} is neither a folder, a list ({', '.join(LIST_SUFFIXES)}) nor a parquet "
            f"file ({', '.join(PARQUET_SUFFIXES)})."
        )
    if len(ds) == 0:
        why = (
            f"no file in its tree ends in {', '.join(IMAGE_EXTENSIONS)} (hidden ones are skipped)"
            if ds.kind == "folder"
            else "the list names no paths"
            if ds.kind == "list"
            else "the parquet file has no rows"
        )
        raise ConfigurationError(
            f"DATA {str(path)!r} holds no images: {why}. Point DATA at the images you mean to mine."
        )
    return ds
