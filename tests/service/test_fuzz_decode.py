"""Byte-level fuzz of the image decoding path (`decode_image`) with Hypothesis.

Seeds are small valid files in every accepted format (and a few with alpha, palette,
16-bit, animation, EXIF); Hypothesis truncates them, flips bytes, splices in junk and
overwrites header fields, and also feeds raw random bytes. Every input must end in either
a well-formed image (uint8 (H, W, 3), alpha (H, W) or None, within the pixel cap) or a
`StyleboxError` with a 4xx status (or 413): never another exception, never a hang.
Fixed budget: derandomized, no example database (~10 s on 2 cores).
"""

from __future__ import annotations

import os
import time

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from stylebox.service.http.errors import StyleboxError
from stylebox.service.imaging import decode_image, set_pixel_limit
from tests.conftest import encode, noise

MAX_PIXELS = 200_000
# `make soak` sets STYLEBOX_SOAK=1: 20x the examples, fresh random ones each run.
SOAK = os.environ.get("STYLEBOX_SOAK") == "1"
SCALE = 20 if SOAK else 1
BUDGET = dict(deadline=None, database=None, derandomize=not SOAK,
              suppress_health_check=list(HealthCheck))


def _seed(fmt: str, mode: str = "RGB", size=(13, 9), **kw) -> bytes:
    rgba = noise(size[1], size[0], seed=len(fmt) + len(mode), channels=4)
    return encode(Image.fromarray(rgba, "RGBA").convert(mode), fmt, **kw)


def _animated() -> bytes:
    frames = [Image.new("P", (10, 6), i) for i in range(3)]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:])


def _exif_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 8
    return _seed("JPEG", exif=exif.tobytes())


SEEDS = [
    _seed("PNG"), _seed("PNG", "RGBA"), _seed("PNG", "P"), _seed("PNG", "LA"),
    _seed("PNG", "I;16"), _seed("JPEG"), _seed("JPEG", "L"), _seed("JPEG", "CMYK"),
    _exif_jpeg(), _seed("WEBP"), _seed("WEBP", "RGBA", lossless=True), _seed("GIF", "P"),
    _animated(), _seed("BMP"), _seed("TIFF"), _seed("TIFF", "RGBA", compression="tiff_lzw"),
    _seed("PPM"), _seed("ICO", "RGBA", size=(16, 16), sizes=[(16, 16)]),
]


def _check(data: bytes) -> None:
    t0 = time.perf_counter()
    try:
        img = decode_image(data, MAX_PIXELS)
    except StyleboxError as e:
        assert 400 <= e.status < 500, (e.status, e.detail)
        assert e.detail and "Traceback" not in e.detail
    else:
        h, w = img.rgb.shape[:2]
        assert img.rgb.dtype == np.uint8 and img.rgb.shape == (h, w, 3)
        assert img.rgb.flags.c_contiguous and 1 <= h * w <= MAX_PIXELS
        if img.alpha is not None:
            assert img.alpha.dtype == np.uint8 and img.alpha.shape == (h, w)
    assert time.perf_counter() - t0 < 5, "decoding one small input took over 5 s"


@st.composite
def mutated(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "truncate", "insert", "overwrite", "delete"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[pos] ^= draw(st.integers(1, 255))
        elif op == "truncate":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=32))
        elif op == "overwrite":  # e.g. width/height fields: 0, huge, negative as signed
            chunk = draw(st.sampled_from([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00",
                                          b"\x7f\xff\xff\xff", b"\x00\x01\x00\x00"]))
            data[pos:pos + len(chunk)] = chunk
        elif op == "delete":
            del data[pos:pos + draw(st.integers(1, 64))]
    return bytes(data)


def test_seeds_decode():
    set_pixel_limit(MAX_PIXELS)
    for data in SEEDS:
        assert decode_image(data, MAX_PIXELS).rgb.size > 0


@settings(max_examples=6000 * SCALE, **BUDGET)
@given(data=mutated())
def test_fuzz_mutated_images(data):
    set_pixel_limit(MAX_PIXELS)
    _check(data)


@settings(max_examples=1500 * SCALE, **BUDGET)
@given(prefix=st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a",
                               b"RIFF\x00\x00\x00\x00WEBPVP8 ", b"II*\x00", b"MM\x00*",
                               b"BM", b"P6\n", b"\x00\x00\x01\x00"]),
       tail=st.binary(max_size=512))
def test_fuzz_random_bytes_behind_magic_numbers(prefix, tail):
    set_pixel_limit(MAX_PIXELS)
    _check(prefix + tail)
