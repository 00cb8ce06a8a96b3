"""Image loading: every format and bit depth becomes uint8 RGB; bad files get clear errors."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from onnxlens.data import load_image, to_rgb8
from onnxlens.data.images import MAX_PIXELS, decode_image
from onnxlens.errors import ImageError


@pytest.fixture
def rgb() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)


@pytest.mark.parametrize("ext", [".png", ".bmp", ".tiff", ".webp", ".ppm"])
def test_lossless_formats_round_trip(tmp_path, rgb, ext):
    p = tmp_path / f"img{ext}"
    params = [cv2.IMWRITE_WEBP_QUALITY, 101] if ext == ".webp" else []  # >100 = lossless webp
    assert cv2.imwrite(str(p), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    np.testing.assert_array_equal(load_image(p), rgb)


def test_jpeg_is_rgb_not_bgr(tmp_path):
    red = np.zeros((16, 16, 3), np.uint8)
    red[..., 0] = 255
    p = tmp_path / "red.jpg"
    cv2.imwrite(str(p), cv2.cvtColor(red, cv2.COLOR_RGB2BGR))
    img = load_image(p)
    assert img[..., 0].mean() > 240 and img[..., 2].mean() < 15


def test_grayscale_replicated(tmp_path):
    g = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    p = tmp_path / "g.png"
    cv2.imwrite(str(p), g)
    img = load_image(p)
    assert img.shape == (8, 8, 3)
    for c in range(3):
        np.testing.assert_array_equal(img[..., c], g)


def test_rgba_composited_over_white(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200  # red channel
    rgba[:2, :, 3] = 255  # top half opaque, bottom transparent
    rgba[2:, :, 3] = 0
    p = tmp_path / "a.png"
    cv2.imwrite(str(p), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    img = load_image(p)
    np.testing.assert_array_equal(img[0, 0], [200, 0, 0])
    np.testing.assert_array_equal(img[3, 3], [255, 255, 255])


def test_16bit_scaled(tmp_path):
    v = np.array([[0, 257 * 128, 65535]], np.uint16)
    im16 = np.stack([v, v, v], axis=-1)
    p = tmp_path / "deep.png"
    cv2.imwrite(str(p), im16)
    np.testing.assert_array_equal(load_image(p)[0, :, 0], [0, 128, 255])


def test_huge_image_decoded_under_pixel_bound(tmp_path, monkeypatch):
    # The real bound (64 MP) works the same; a smaller one keeps the test fast.
    assert MAX_PIXELS >= 16_000_000
    monkeypatch.setattr("onnxlens.data.images.MAX_PIXELS", 1_000_000)
    side = int((1_000_000 * 1.5) ** 0.5)
    big = np.full((side, side, 3), 90, np.uint8)
    p = tmp_path / "huge.png"
    cv2.imwrite(str(p), big, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    img = load_image(p)
    assert img.shape[0] * img.shape[1] <= 1_000_000 and img.shape[0] > side // 2
    assert int(img.mean()) == 90


def test_huge_grayscale_decoded_under_pixel_bound(tmp_path, monkeypatch):
    """A 2-D image is bounded like a colour one (to_rgb8 triples it afterwards)."""
    monkeypatch.setattr("onnxlens.data.images.MAX_PIXELS", 1_000_000)
    h, w = 1500, 1000
    ramp = np.tile((np.arange(w) * 255 // (w - 1)).astype(np.uint8), (h, 1))
    p = tmp_path / "huge_gray.png"
    cv2.imwrite(str(p), ramp, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    img = load_image(p)
    assert img.shape[0] * img.shape[1] <= 1_000_000
    assert img.shape[0] > h // 2 and abs(img.shape[0] / img.shape[1] - h / w) < 0.01
    assert img[:, 0].max() < 5 and img[:, -1].min() > 250  # the ramp survives the resize
    np.testing.assert_array_equal(img[..., 0], img[..., 2])


@pytest.mark.parametrize("ext", [".png", ".jpg"])
@pytest.mark.parametrize("cap", [None, 1_000])
def test_decode_image_of_a_files_bytes_is_load_image(tmp_path, monkeypatch, rgb, ext, cap):
    if cap is not None:  # 37 x 53 = 1961 pixels: over the bound, so both must shrink it
        monkeypatch.setattr("onnxlens.data.images.MAX_PIXELS", cap)
    p = tmp_path / f"img{ext}"
    cv2.imwrite(str(p), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    got = decode_image(p.read_bytes(), "bytes")
    np.testing.assert_array_equal(got, load_image(p))
    if cap is None:
        assert got.shape == rgb.shape
    else:
        assert got.shape[0] * got.shape[1] <= cap and got.shape[:2] == (26, 37)


def test_decode_image_refuses_empty_and_garbage_naming_the_source():
    with pytest.raises(ImageError, match=r"^row 3 \('x.png'\) is empty \(0 bytes\)\.$"):
        decode_image(b"", "row 3 ('x.png')")
    with pytest.raises(ImageError, match=r"^cannot decode blob 7: its bytes are corrupt"):
        decode_image(b"\x89PNG\r\n\x1a\n truncated", "blob 7")


def test_corrupt_empty_missing(tmp_path, rgb):
    p = tmp_path / "ok.jpg"
    cv2.imwrite(str(p), rgb)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\x00not a jpeg at all" * 20)
    with pytest.raises(ImageError, match="corrupt, truncated or not an image"):
        load_image(bad)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ImageError, match="empty"):
        load_image(empty)
    with pytest.raises(ImageError, match="does not exist"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(ImageError, match="folder"):
        load_image(tmp_path)


@pytest.mark.parametrize(
    "arr,expected",
    [
        (np.full((2, 2), 0.5, np.float32), 128),  # float in [0, 1]
        (np.full((2, 2, 3), 200.0), 200),  # float in [0, 255]
        (np.full((2, 2, 1), 7, np.uint8), 7),
        (np.full((2, 2, 3), 65535, np.uint16), 255),
    ],
)
def test_arrays_converted(arr, expected):
    out = to_rgb8(arr)
    assert out.dtype == np.uint8 and out.shape == (2, 2, 3)
    assert (out == expected).all()


@pytest.mark.parametrize(
    "arr", [np.zeros((0, 4, 3), np.uint8), np.zeros((3, 8, 8), np.uint8), np.full((2, 2), np.nan)]
)
def test_bad_arrays(arr):
    with pytest.raises(ImageError):
        to_rgb8(arr)
