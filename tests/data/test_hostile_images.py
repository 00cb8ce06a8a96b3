"""Hostile images: headers that promise gigapixels. Decoding is bounded from the header, before
OpenCV allocates anything; the peak memory is measured in a fresh process (ru_maxrss)."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from onnxlens.data.images import decode_image, load_image
from onnxlens.errors import ImageError

ROOT = Path(__file__).resolve().parents[2]


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def zero_png(width: int, height: int, rows: int | None = None, block_bytes: int = 4 << 20) -> bytes:
    """A valid 8-bit RGB PNG of zeros, `rows` rows of image data (default all): gigapixels in a
    few MB, in well under a second. A block of rows is compressed once and repeated (a full
    flush resets the compressor, so identical input compresses to identical bytes); the
    Adler-32 of all the rows closes the stream."""
    rows = height if rows is None else rows
    row = bytes(1 + 3 * width)  # filter byte 0 + the pixels
    if rows == 0:
        body = zlib.compress(b"")
    else:
        per = max(1, min(rows, block_bytes // len(row)))
        n, rest = divmod(rows, per)
        block = row * per
        c = zlib.compressobj(1)
        first = c.compress(block) + c.flush(zlib.Z_FULL_FLUSH)
        again = c.compress(block) + c.flush(zlib.Z_FULL_FLUSH) if n > 1 else b""
        last = c.compress(row * rest) + c.flush(zlib.Z_FINISH)
        adler = 1
        for _ in range(n):
            adler = zlib.adler32(block, adler)
        adler = zlib.adler32(row * rest, adler)
        body = first + again * (n - 1) + last[:-4] + struct.pack(">I", adler)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", body) + _chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("h", [64, 67, 3])
def test_zero_png_is_a_valid_png(h):
    """The helper's files are real PNGs: zlib inflates the body whole (checksum included), and
    OpenCV decodes them to zeros, repeated blocks and a partial last block included."""
    data = zero_png(40, h, block_bytes=121 * 5)
    idat = data[33 + 8 : -12 - 4]
    assert zlib.decompress(idat) == bytes(121 * h)
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert img is not None and img.shape == (h, 40, 3) and not img.any()


_PEAK = """
import json, resource, sys
import onnxlens.data.images as I
def _hwm():
    # peak RSS of this process image (VmHWM); ru_maxrss survives execve and would report the
    # parent pytest's peak, so it cannot be used in a child
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
path = sys.argv[1]
base = _hwm()
try:
    img = I.load_image(path)
    res = {"shape": list(img.shape)}
except Exception as exc:
    res = {"error": type(exc).__module__ + "." + type(exc).__name__, "message": str(exc)}
res["peak_mb"] = (_hwm() - base) / 1024
print(json.dumps(res))
"""


def _decode_in_subprocess(path: Path) -> dict:
    r = subprocess.run(
        [sys.executable, "-c", _PEAK, str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_20000_square_png_is_refused_from_its_header_not_decoded(tmp_path):
    """A real 20000x20000 PNG (1.2 GB of pixels, 1.2 MB on disk) is refused before OpenCV
    allocates it: the decode's peak memory stays tiny, the error names the size and the fix.
    (Before: 2.3 GB peak, then an 8000x8000 image.)"""
    p = tmp_path / "bomb.png"
    p.write_bytes(zero_png(20000, 20000))
    assert p.stat().st_size < 8 << 20
    res = _decode_in_subprocess(p)
    assert res.get("error") == "onnxlens.errors.ImageError", res
    assert "20000x20000" in res["message"] and "resize" in res["message"]
    assert res["peak_mb"] < 64, res


def test_40000_square_png_with_a_tiny_body_gets_a_clear_error(tmp_path):
    p = tmp_path / "bomb40k.png"
    p.write_bytes(zero_png(40000, 40000, rows=2))
    res = _decode_in_subprocess(p)
    assert res.get("error") == "onnxlens.errors.ImageError", res
    assert "40000x40000" in res["message"] and "DECODE_BUDGET_BYTES" in res["message"]
    assert res["peak_mb"] < 64, res


def test_huge_jpeg_is_decoded_reduced_within_the_bound(tmp_path, monkeypatch):
    """A JPEG over the decode bound is decoded at 1/2..1/8 scale by libjpeg (no full-size image
    ever exists), then fitted under MAX_PIXELS; its content survives."""
    rng = np.random.default_rng(0)
    img = np.zeros((1600, 1200, 3), np.uint8)
    img[:800] = (200, 30, 30)  # top half red (RGB), bottom half blue
    img[800:] = (30, 30, 200)
    img[::7] += rng.integers(0, 5, img[::7].shape, dtype=np.uint8)
    p = tmp_path / "big.jpg"
    cv2.imwrite(str(p), img[:, :, ::-1])
    # The full decode would need ~1600*1200*3 * 3 bytes; allow a quarter of that.
    monkeypatch.setattr("onnxlens.data.images.DECODE_BUDGET_BYTES", 1600 * 1200 * 3 * 3 // 4)
    got = load_image(p)
    assert got.shape == (800, 600, 3)
    assert abs(int(got[100, 300, 0]) - 200) < 12 and abs(int(got[700, 300, 2]) - 200) < 12
    # Under a bound even 1/8 scale does not fit, it is refused with the size in the message.
    monkeypatch.setattr("onnxlens.data.images.DECODE_BUDGET_BYTES", 10_000)
    with pytest.raises(ImageError, match="1200x1600 pixels"):
        load_image(p)


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".webp", ".tiff", ".ppm", ".pgm", ".jp2"])
def test_header_dimensions_match_opencv(tmp_path, ext):
    """read_header gives the dimensions OpenCV decodes, for every extension onnxlens reads."""
    from onnxlens.data.header import read_header

    img = np.random.default_rng(1).integers(0, 255, (37, 53, 3), dtype=np.uint8)
    if ext == ".pgm":
        img = img[:, :, 0]
    p = tmp_path / f"x{ext}"
    if not cv2.imwrite(str(p), img):
        pytest.skip(f"this OpenCV build does not write {ext}")
    h = read_header(p.read_bytes())
    assert h is not None and (h.height, h.width) == (37, 53)
    assert decode_image(p.read_bytes()).shape == (37, 53, 3)


def test_unknown_and_broken_headers_are_image_errors():
    with pytest.raises(ImageError, match="corrupt, truncated"):
        decode_image(b"\x00\x01 no image signature" + bytes(40))
    with pytest.raises(ImageError, match="corrupt, truncated"):
        decode_image(b"\xff\xd8\xff\xe0\x00")  # a JPEG signature, header cut short
    with pytest.raises(ImageError, match="no pixels"):
        decode_image(zero_png(0, 5, rows=0))


_THREADS = """
import json, resource, sys
from pathlib import Path
import onnxlens.data.images as I
from onnxlens.mining.dataset import open_dataset
from onnxlens.mining.runner import iter_batches
import concurrent.futures as cf
def _hwm():
    # peak RSS of this process image (VmHWM); ru_maxrss survives execve and would report the
    # parent pytest's peak, so it cannot be used in a child
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
I.DECODE_BUDGET_BYTES = int(sys.argv[2])
ds = open_dataset(sys.argv[1])
fit = lambda im: im[:8, :8].copy()
base = _hwm()
n = sum(len(b.ids) for b in iter_batches(ds, range(len(ds)), 16, fit, cf.ThreadPoolExecutor(8)))
print(json.dumps({"n": n, "peak_mb": (_hwm() - base) / 1024}))
"""


def test_mining_decode_threads_share_one_memory_bound(tmp_path):
    """Eight decode threads over sixteen 3000x3000 PNGs (27 MB each decoded, 81 MB at the peak
    of one decode): with a 100 MB budget at most one decode is in flight, so the process' peak
    stays near one decode, not eight."""
    d = tmp_path / "imgs"
    d.mkdir()
    data = zero_png(3000, 3000)
    for i in range(16):
        (d / f"{i:02d}.png").write_bytes(data)
    r = subprocess.run(
        [sys.executable, "-c", _THREADS, str(d), str(100 << 20)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["n"] == 16
    assert res["peak_mb"] < 140, res
