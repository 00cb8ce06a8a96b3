"""Atomic files: written to a temporary name beside the target and moved into place with
os.replace, so a kill (or a reader racing the writer) sees either the whole file or none."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` so readers (and a resumed run) see all of it or nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_save_npz(path: Path, **arrays: np.ndarray) -> None:
    """`np.savez` of `arrays` to `path`, atomically (see `atomic_write`)."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)  # type: ignore[arg-type]  # mypy: the dict could hold a key "allow_pickle"
    atomic_write(path, buf.getvalue())
