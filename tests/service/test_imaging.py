"""Decoding every common mode to RGB (+ alpha), encoding, and the inference-size fit."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from stylebox.service.http.errors import (
    CorruptImageError,
    ImageTooLargeError,
    MissingImageError,
    OutputFormatError,
    UnsupportedImageError,
)
from stylebox.service.imaging import decode_image, encode_image, fit_size, resize_rgb
from tests.conftest import encode, noise, pixels

BIG = 10_000_000


def test_rgb_roundtrip_is_exact():
    rgb = noise(7, 9, seed=0)
    d = decode_image(encode(rgb), BIG)
    assert d.alpha is None and d.size == (9, 7) and d.source_format == "PNG"
    assert d.rgb.flags["C_CONTIGUOUS"] and d.rgb.dtype == np.uint8
    np.testing.assert_array_equal(d.rgb, rgb)


@pytest.mark.parametrize("mode", ["1", "L", "P", "CMYK", "YCbCr", "RGBX"])
def test_modes_without_alpha_become_rgb(mode):
    im = Image.fromarray(noise(6, 5, seed=1)).convert(mode)
    fmt = "JPEG" if mode in ("CMYK", "YCbCr") else ("TIFF" if mode == "RGBX" else "PNG")
    d = decode_image(encode(im, fmt), BIG)
    assert d.rgb.shape == (6, 5, 3) and d.alpha is None


def test_greyscale_replicates_channels():
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    d = decode_image(encode(grey), BIG)
    for c in range(3):
        np.testing.assert_array_equal(d.rgb[:, :, c], grey)


def test_16bit_greyscale_is_scaled_not_clipped():
    g16 = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    d = decode_image(encode(g16), BIG)
    np.testing.assert_array_equal(d.rgb[0, :, 0], [0, 1, 128, 255])


def test_32bit_and_float_greyscale():
    i32 = Image.fromarray(np.array([[0, 100, 255]], dtype=np.int32))
    d = decode_image(encode(i32, "TIFF"), BIG)
    np.testing.assert_array_equal(d.rgb[0, :, 0], [0, 100, 255])  # 8-bit range kept
    f = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32))
    np.testing.assert_array_equal(decode_image(encode(f, "TIFF"), BIG).rgb[0, :, 0], [0, 128, 255])


@pytest.mark.parametrize("mode,fmt", [("RGBA", "PNG"), ("LA", "PNG"), ("RGBA", "WEBP")])
def test_alpha_is_split_off(mode, fmt):
    im = Image.fromarray(noise(4, 6, seed=2, channels=4)).convert(mode)
    d = decode_image(encode(im, fmt, lossless=True), BIG)
    assert d.alpha is not None and d.alpha.shape == (4, 6) and d.rgb.shape == (4, 6, 3)
    np.testing.assert_array_equal(d.alpha, np.asarray(im)[..., -1])


def test_trns_transparency_on_rgb_png():
    im = Image.new("RGB", (3, 2), (10, 20, 30))
    im.putpixel((0, 0), (1, 2, 3))
    d = decode_image(encode(im, transparency=(1, 2, 3)), BIG)
    assert d.alpha is not None and d.alpha[0, 0] == 0 and d.alpha[1, 1] == 255


@pytest.mark.parametrize("orientation,size", [(1, (8, 4)), (3, (8, 4)), (6, (4, 8)),
                                              (8, (4, 8))])
def test_exif_orientation(orientation, size):
    exif = Image.Exif()
    exif[0x0112] = orientation
    im = Image.new("RGB", (8, 4), (200, 10, 10))
    assert decode_image(encode(im, "JPEG", exif=exif.tobytes()), BIG).size == size


def test_errors():
    with pytest.raises(MissingImageError):
        decode_image(b"", BIG)
    with pytest.raises(UnsupportedImageError):
        decode_image(b"<svg xmlns='http://www.w3.org/2000/svg'/>", BIG)
    png = encode(Image.new("RGB", (40, 40), (1, 2, 3)))
    with pytest.raises(CorruptImageError):
        decode_image(png[:-20], BIG)  # IEND and some IDAT gone
    with pytest.raises(ImageTooLargeError) as e:
        decode_image(png, 1599)
    assert e.value.extensions == {"width": 40, "height": 40, "pixels": 1600, "max_pixels": 1599}


def test_encode_formats_and_alpha():
    rgb, alpha = noise(5, 7, seed=3), noise(5, 7, seed=4, channels=1)[..., 0]
    np.testing.assert_array_equal(pixels(encode_image(rgb, alpha, "png")),
                                  np.dstack([rgb, alpha]))
    assert Image.open(io.BytesIO(encode_image(rgb, alpha, "jpeg"))).mode == "RGB"
    assert Image.open(io.BytesIO(encode_image(rgb, alpha, "webp", 80))).mode == "RGBA"
    assert Image.open(io.BytesIO(encode_image(rgb, None, "webp"))).mode == "RGB"
    with pytest.raises(OutputFormatError):
        encode_image(np.zeros((1, 17_000, 3), np.uint8), None, "webp")


@pytest.mark.parametrize("w,h,limit", [(100, 60, 1000), (3840, 2160, 8_500_000),
                                       (1, 100_000, 500), (100_000, 1, 500), (7, 7, 1),
                                       (8000, 6000, 8_500_000)])
def test_fit_size(w, h, limit):
    fw, fh = fit_size(w, h, limit)
    assert 1 <= fw <= w and 1 <= fh <= h and fw * fh <= max(limit, 1)
    if w * h <= limit:
        assert (fw, fh) == (w, h)
    elif min(fw, fh) > 10:
        assert abs(fw / fh - w / h) / (w / h) < 0.02


def test_resize_rgb():
    rgb = noise(30, 40, seed=5)
    assert resize_rgb(rgb, (20, 15)).shape == (15, 20, 3)
    assert resize_rgb(rgb, (80, 60)).shape == (60, 80, 3)
