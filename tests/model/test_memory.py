"""Freed memory goes back to the OS (`model.memory`), as Model.clear_sessions relies on.

glibc keeps the pages of freed blocks below its mmap threshold mapped while a block above them
is still in use; `release_freed_memory` (malloc_trim) returns them. The blocks here are
allocated with the C library's own malloc, so the check does not depend on how numpy or ONNX
Runtime allocate.
"""

from __future__ import annotations

import ctypes
import subprocess
import sys

import numpy as np
import pytest

from onnxlens.model.memory import rss_bytes

glibc = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not hasattr(ctypes.CDLL(None), "malloc_trim"),
    reason="malloc_trim is glibc's",
)

# Each block under glibc's default mmap threshold (128 KiB): they come from the heap.
BLOCK = 64 * 1024
BLOCKS = 2048  # 128 MiB


def _held_after_free(release: bool) -> int:
    """In a fresh interpreter: malloc BLOCKS blocks and touch them, free all but the last
    (which pins the heap's top, so free() itself cannot trim), optionally release, and print
    how many bytes of the freed ones are still resident."""
    code = f"""
import ctypes
from onnxlens.model.memory import release_freed_memory, rss_bytes
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
before = rss_bytes()
blocks = [libc.malloc({BLOCK}) for _ in range({BLOCKS})]
for b in blocks:
    ctypes.memset(b, 1, {BLOCK})
for b in blocks[:-1]:
    libc.free(b)
if {release}:
    assert release_freed_memory()
print(rss_bytes() - before)
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    return int(out.stdout.strip())


@glibc
def test_release_freed_memory_returns_heap_pages() -> None:
    total = BLOCK * BLOCKS
    kept = _held_after_free(release=False)
    released = _held_after_free(release=True)
    assert kept > 0.9 * total  # glibc keeps the freed blocks mapped ...
    assert released < 0.1 * total  # ... until malloc_trim hands them back


def test_rss_bytes_reads_this_process() -> None:
    now, peak = rss_bytes(), rss_bytes(peak=True)
    if now is None:
        pytest.skip("no /proc/self/status")
    assert peak is not None and 0 < now <= peak
    big = np.ones(64 << 20, np.uint8)  # 64 MiB, touched
    assert rss_bytes(peak=True) >= peak and rss_bytes() >= now + (60 << 20)  # type: ignore[operator]
    del big
