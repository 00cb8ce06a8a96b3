"""Image dimensions from the first bytes of a file, before anything is decoded.

OpenCV allocates the whole decoded image as soon as it has read the header, so the only way to
bound a decode's memory is to read the header first. `read_header` parses the formats onnxlens
reads (PNG, JPEG, BMP, WebP, TIFF, PNM, JPEG 2000, GIF) with plain `struct` reads; it never decodes
pixels and never reads past what it is given.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

__all__ = ["Header", "read_header"]


@dataclass(frozen=True)
class Header:
    """What a decode will allocate: `height` x `width` pixels of `channels` samples of `depth`
    bytes (OpenCV's IMREAD_UNCHANGED result). `format` is a short name ("png", "jpeg", ...)."""

    format: str
    height: int
    width: int
    channels: int = 4
    depth: int = 1

    @property
    def pixels(self) -> int:
        return self.height * self.width

    @property
    def nbytes(self) -> int:
        return self.pixels * self.channels * self.depth


class HeaderError(ValueError):
    """A known signature whose header is cut short or inconsistent."""


def _png(b: bytes) -> Header:
    if len(b) < 29 or b[12:16] != b"IHDR":
        raise HeaderError("PNG without an IHDR chunk")
    w, h, bits, ctype = struct.unpack(">IIBB", b[16:26])
    # OpenCV decodes grey+alpha and palette with transparency to 4 channels.
    channels = {0: 1, 2: 3, 3: 4, 4: 4, 6: 4}.get(ctype, 4)
    return Header("png", h, w, channels, 2 if bits == 16 else 1)


_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg(b: bytes) -> Header:
    i = 2
    while i + 4 <= len(b):
        if b[i] != 0xFF:
            raise HeaderError("JPEG marker expected")
        marker = b[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length
            i += 2
            continue
        (length,) = struct.unpack(">H", b[i + 2 : i + 4])
        if marker in _SOF:
            if i + 10 > len(b):
                break
            _, h, w, ncomp = struct.unpack(">BHHB", b[i + 4 : i + 10])
            if h == 0:  # height given later in a DNL marker: unknown here
                raise HeaderError("JPEG height deferred to a DNL marker")
            return Header("jpeg", h, w, 1 if ncomp == 1 else 3, 1)
        if marker == 0xDA or length < 2:
            break
        i += 2 + length
    raise HeaderError("JPEG without a frame header")


def _bmp(b: bytes) -> Header:
    if len(b) < 26:
        raise HeaderError("BMP header cut short")
    (dib,) = struct.unpack("<I", b[14:18])
    if dib == 12:
        w, h, _, bpp = struct.unpack("<HHHH", b[18:26])
    else:
        if len(b) < 30:
            raise HeaderError("BMP header cut short")
        w, h, _, bpp = struct.unpack("<iiHH", b[18:30])
    return Header("bmp", abs(h), abs(w), 4 if bpp == 32 else 3, 1)


def _webp(b: bytes) -> Header:
    kind = b[12:16]
    if kind == b"VP8X" and len(b) >= 30:
        w = int.from_bytes(b[24:27], "little") + 1
        h = int.from_bytes(b[27:30], "little") + 1
        return Header("webp", h, w, 4, 1)
    if kind == b"VP8L" and len(b) >= 25:
        (bits,) = struct.unpack("<I", b[21:25])
        return Header("webp", ((bits >> 14) & 0x3FFF) + 1, (bits & 0x3FFF) + 1, 4, 1)
    if kind == b"VP8 " and len(b) >= 30:
        w, h = struct.unpack("<HH", b[26:30])
        return Header("webp", h & 0x3FFF, w & 0x3FFF, 3, 1)
    raise HeaderError("WebP without a VP8/VP8L/VP8X chunk")


def _tiff(b: bytes) -> Header:
    end = "<" if b[:2] == b"II" else ">"
    (magic,) = struct.unpack(end + "H", b[2:4])
    if magic == 43:  # BigTIFF: 8-byte offsets and counts
        (off,) = struct.unpack(end + "Q", b[8:16])
        count_fmt, entry, head = "Q", 20, 8
    else:
        (off,) = struct.unpack(end + "I", b[4:8])
        count_fmt, entry, head = "H", 12, 2
    if off + head > len(b):
        raise HeaderError("TIFF directory beyond the bytes given")
    (n,) = struct.unpack(end + count_fmt, b[off : off + head])
    tags: dict[int, int] = {}
    sizes = {1: "B", 3: "H", 4: "I", 16: "Q"}
    for k in range(min(n, 4096)):
        p = off + head + k * entry
        if p + entry > len(b):
            break
        tag, typ = struct.unpack(end + "HH", b[p : p + 4])
        fmt = sizes.get(typ)
        if fmt is None:
            continue
        value_at = p + (12 if magic == 43 else 8)
        (value,) = struct.unpack(end + fmt, b[value_at : value_at + struct.calcsize(fmt)])
        tags[tag] = value
    if 256 not in tags or 257 not in tags:
        raise HeaderError("TIFF without ImageWidth/ImageLength")
    bits = tags.get(258, 8)
    depth = 1 if bits <= 8 else 2 if bits <= 16 else 4  # a count > 1 stores an offset: take 1 byte
    return Header("tiff", tags[257], tags[256], max(1, min(tags.get(277, 4), 4)), depth)


def _pnm(b: bytes) -> Header:
    tokens: list[int] = []
    i, n = 2, len(b)
    want = 2 if b[1:2] in (b"1", b"4") else 3
    while len(tokens) < want and i < n:
        c = b[i : i + 1]
        if c == b"#":
            while i < n and b[i : i + 1] not in (b"\n", b"\r"):
                i += 1
        elif c.isspace():
            i += 1
        elif c.isdigit():
            j = i
            while j < n and b[j : j + 1].isdigit():
                j += 1
            tokens.append(int(b[i:j]))
            i = j
        else:
            raise HeaderError("PNM header is not numeric")
    if len(tokens) < 2:
        raise HeaderError("PNM header cut short")
    depth = 2 if len(tokens) > 2 and tokens[2] > 255 else 1
    channels = 3 if b[1:2] in (b"3", b"6") else 1
    return Header("pnm", tokens[1], tokens[0], channels, depth)


def _j2k(b: bytes, at: int = 0) -> Header:
    if b[at + 2 : at + 4] != b"\xff\x51" or at + 42 > len(b):
        raise HeaderError("JPEG 2000 codestream without a SIZ marker")
    xs, ys, xo, yo = struct.unpack(">IIII", b[at + 8 : at + 24])
    (nc,) = struct.unpack(">H", b[at + 40 : at + 42])
    return Header("jp2", ys - yo, xs - xo, max(1, min(nc, 4)), 2)


def _jp2(b: bytes) -> Header:
    i = 0
    while i + 8 <= len(b):
        length, kind = struct.unpack(">I4s", b[i : i + 8])
        head = 8
        if length == 1 and i + 16 <= len(b):
            (length,) = struct.unpack(">Q", b[i + 8 : i + 16])
            head = 16
        if kind == b"jp2h":  # a superbox: look inside
            i += head
            continue
        if kind == b"ihdr" and i + 18 <= len(b):
            h, w, nc = struct.unpack(">IIH", b[i + 8 : i + 18])
            return Header("jp2", h, w, max(1, min(nc, 4)), 2)
        if kind == b"jp2c":
            return _j2k(b, i + head)
        if length < head:
            break
        i += length
    raise HeaderError("JP2 file without an image header box")


def read_header(b: bytes) -> Header | None:
    """The dimensions `b` (the first bytes of an encoded image; 64 KiB is plenty for any header
    but a JPEG's behind very large metadata) promises, or None when the signature is none of the
    formats above. Raises HeaderError for a known signature with a broken header."""
    try:
        if b[:8] == b"\x89PNG\r\n\x1a\n":
            return _png(b)
        if b[:3] == b"\xff\xd8\xff":
            return _jpeg(b)
        if b[:2] == b"BM":
            return _bmp(b)
        if b[:4] == b"RIFF" and b[8:12] == b"WEBP":
            return _webp(b)
        if b[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
            return _tiff(b)
        if b[:1] == b"P" and b[1:2] in (b"1", b"2", b"3", b"4", b"5", b"6"):
            return _pnm(b)
        if b[:12] == b"\x00\x00\x00\x0cjP  \r\n\x87\n":
            return _jp2(b)
        if b[:4] == b"\xff\x4f\xff\x51":
            return _j2k(b)
        if b[:6] in (b"GIF87a", b"GIF89a"):  # OpenCV 4.11+ reads GIF (first frame, as BGR/BGRA)
            w, h = struct.unpack("<HH", b[6:10])
            return Header("gif", h, w, 4, 1)
    except struct.error as exc:
        raise HeaderError(f"header cut short ({exc})") from exc
    return None
