"""Prompt tokens of image inputs, by OpenAI's published tile rule.

OpenAI bills an image by its size, not its bytes: ``detail="low"`` costs a flat 85 tokens;
``"high"`` (and ``"auto"``, which we treat as high because the model may pick it) scales the image
to fit inside 2048x2048, then so its shortest side is at most 768 px, and costs 85 + 170 tokens
per 512x512 tile. Images are only ever scaled down, never up.

The size is usually unknown to a proxy: for a plain URL we would have to fetch the image, which a
request-path sidecar must never do. We then **assume a 1024x1024 image** (765 tokens at high
detail): a typical photo or screenshot after the client's own resizing, and the example OpenAI
documents. For ``data:`` URLs the real size is read from the image header (PNG, GIF, WebP,
JPEG) without decoding the whole payload, so inline images are counted exactly.

Caveat: these are the gpt-4o / gpt-4.1 numbers. Some models bill images at other rates
(gpt-4o-mini, for example, inflates image tokens so its dollar cost matches gpt-4o); per-model
rates are not modelled here.
"""

from __future__ import annotations

import binascii
import math
import struct

LOW_DETAIL_TOKENS = 85
BASE_TOKENS = 85
TILE_TOKENS = 170
TILE_SIZE = 512
MAX_SIDE = 2048
SHORT_SIDE = 768
ASSUMED_SIZE = (1024, 1024)
"""Size assumed when it cannot be read (remote URL, file id, unreadable data URL)."""

# Enough base64 for any PNG/GIF/WebP header and for JPEGs whose SOF marker follows modest
# EXIF/ICC segments; decoding a 48 KB prefix costs microseconds even for multi-MB data URLs.
_SNIFF_B64_CHARS = 64 * 1024


def image_tokens(width: int, height: int, detail: str | None = "auto") -> int:
    """Tokens for a ``width`` x ``height`` image at ``detail`` ("low", "high" or "auto")."""
    if detail == "low":
        return LOW_DETAIL_TOKENS
    if width <= 0 or height <= 0:
        width, height = ASSUMED_SIZE
    w, h = float(width), float(height)
    if max(w, h) > MAX_SIDE:
        scale = MAX_SIDE / max(w, h)
        w, h = w * scale, h * scale
    if min(w, h) > SHORT_SIDE:
        scale = SHORT_SIDE / min(w, h)
        w, h = w * scale, h * scale
    # Floor before tiling: float noise like 1536.0000001 must not add a whole tile row.
    tiles = math.ceil(math.floor(w) / TILE_SIZE) * math.ceil(math.floor(h) / TILE_SIZE)
    return BASE_TOKENS + TILE_TOKENS * max(tiles, 1)


def image_url_tokens(url: str | None, detail: str | None = "auto") -> int:
    """Tokens for an image given by URL: exact for readable ``data:`` URLs, else assumes 1024x1024."""
    if detail == "low":
        return LOW_DETAIL_TOKENS
    size = data_url_dimensions(url) if url else None
    width, height = size if size is not None else ASSUMED_SIZE
    return image_tokens(width, height, detail)


def data_url_dimensions(url: str) -> tuple[int, int] | None:
    """(width, height) of a base64 ``data:image/...`` URL, read from its header; else ``None``."""
    if not url.startswith("data:"):
        return None
    header, sep, payload = url.partition(",")
    if not sep or not header.endswith(";base64"):
        return None
    chunk = payload[:_SNIFF_B64_CHARS]
    chunk = chunk[: len(chunk) - len(chunk) % 4]
    try:
        data = binascii.a2b_base64(chunk)
    except (binascii.Error, ValueError):
        return None
    return sniff_dimensions(data)


def sniff_dimensions(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the first bytes of a PNG, GIF, WebP or JPEG file; else ``None``."""
    try:
        if data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR":
            w, h = struct.unpack(">II", data[16:24])
        elif data[:6] in (b"GIF87a", b"GIF89a"):
            w, h = struct.unpack("<HH", data[6:10])
        elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return _webp_dimensions(data)
        elif data.startswith(b"\xff\xd8"):
            return _jpeg_dimensions(data)
        else:
            return None
    except struct.error:
        return None
    return (w, h) if w > 0 and h > 0 else None


def _webp_dimensions(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8X":
        w = int.from_bytes(data[24:27], "little") + 1
        h = int.from_bytes(data[27:30], "little") + 1
    elif chunk == b"VP8L":
        bits = int.from_bytes(data[21:25], "little")
        w, h = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    elif chunk == b"VP8 ":
        w0, h0 = struct.unpack("<HH", data[26:30])
        w, h = w0 & 0x3FFF, h0 & 0x3FFF
    else:
        return None
    return (w, h) if w > 0 and h > 0 else None


# Start-of-frame markers carry the size; C4 (DHT), C8 (JPG) and CC (DAC) share the range but don't.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_dimensions(data: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 9 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0xDA:
            return None  # start of scan (entropy-coded data) reached without a frame header
        if marker == 0x01 or 0xD0 <= marker <= 0xD9:  # standalone markers: TEM, RSTn, SOI, EOI
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if marker in _JPEG_SOF:
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            return (w, h) if w > 0 and h > 0 else None
        i += 2 + length
    return None
