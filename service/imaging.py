"""Bytes -> RGB (+ alpha) arrays and back, with Pillow.

Decoding is defensive: only a fixed list of raster formats is tried (no EPS/Ghostscript, no
headerless formats that match random bytes), the pixel count is checked from the header
before any pixel is decoded, and every Pillow failure maps to a `StyleboxError`:
not an image -> 415, truncated/corrupt -> 422, too many pixels -> 413.

Normalisation: EXIF orientation is applied; greyscale (1, L, I;16, I, F), palette, CMYK,
YCbCr, ... become RGB; alpha (RGBA, LA, PA, palette or tRNS transparency) is split off so it
can be passed through untouched (PNG and WebP keep it, JPEG drops it). 16-bit and 32-bit
greyscale are scaled to 8 bits, not clipped. Animated images use their first frame.
"""

from __future__ import annotations

import io
import logging
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from stylebox.service.http.errors import (
    CorruptImageError,
    ImageTooLargeError,
    MissingImageError,
    OutputFormatError,
    UnsupportedImageError,
)
from stylebox.service.sniff import IMAGES, sniff

log = logging.getLogger("stylebox.imaging")

MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
EXTENSIONS = {"png": ".png", "jpeg": ".jpg", "webp": ".webp"}
# JPEG covers MPO (many phones' .jpg); AVIF only if this Pillow build has it.
_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF", "PPM", "ICO", "AVIF")
_WEBP_MAX_SIDE = 16383
_JPEG_MAX_SIDE = 65535


def allowed_formats() -> list[str]:
    Image.init()
    return [f for f in _FORMATS if f in Image.OPEN]


def set_pixel_limit(max_pixels: int) -> None:
    """Align Pillow's decompression-bomb guard with ours (it is process-global).

    Pillow warns above MAX_IMAGE_PIXELS and raises above twice that; both cases are
    rejected by `decode_image` anyway, so its warning is only noise.
    """
    import warnings

    Image.MAX_IMAGE_PIXELS = max_pixels
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


@dataclass
class DecodedImage:
    rgb: np.ndarray  # uint8 (H, W, 3), C-contiguous
    alpha: np.ndarray | None  # uint8 (H, W) or None
    source_format: str

    @property
    def size(self) -> tuple[int, int]:  # (width, height), as Pillow says it
        return self.rgb.shape[1], self.rgb.shape[0]


def _too_many(width: int, height: int, max_pixels: int) -> ImageTooLargeError:
    return ImageTooLargeError(
        f"image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}",
        width=width, height=height, pixels=width * height, max_pixels=max_pixels)


def _grey8(arr: np.ndarray, mode: str) -> np.ndarray:
    """Scale 16/32-bit integer or float greyscale to uint8 (Pillow's convert would clip)."""
    a = arr.astype(np.float32)
    if mode == "F":
        a = a * 255.0 if a.size and a.max() <= 1.0 else a  # [0, 1] floats are common
    elif mode.startswith("I;16") or (a.size and a.max() > 255):
        a = np.clip(a, 0, 65535) / 257.0  # 16-bit range (32-bit "I" from 16-bit PNG/TIFF)
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def _to_arrays(im: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    mode = im.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        grey = _grey8(np.asarray(im), mode)
        return np.repeat(grey[:, :, None], 3, axis=2), None
    bands = im.getbands()
    has_alpha = "A" in bands or "a" in bands or "transparency" in im.info
    target = "RGBA" if has_alpha else "RGB"
    if mode != target:
        im = im.convert(target)  # P, L, LA, CMYK, YCbCr, RGBa, ... and tRNS transparency
    arr = np.asarray(im)
    if not has_alpha:
        return arr, None
    return np.ascontiguousarray(arr[:, :, :3]), arr[:, :, 3]


def decode_image(data: bytes, max_pixels: int) -> DecodedImage:
    if not data:
        raise MissingImageError("the image is empty (0 bytes)")
    try:
        im = Image.open(io.BytesIO(data), formats=allowed_formats())
    except UnidentifiedImageError:
        # Pillow reports a file it cannot parse as "unidentified" even when it starts like a
        # PNG; those are damaged images (422), not other media types (415).
        if (sniffed := sniff(data)) in IMAGES:
            raise CorruptImageError(f"the {sniffed} image is truncated or corrupt") from None
        raise UnsupportedImageError(
            "not an image in a supported format ("
            + ", ".join(allowed_formats()) + ")", supported=allowed_formats()) from None
    except Image.DecompressionBombError:
        # Pillow's own guard fired inside open(); report the same limit as ours.
        raise ImageTooLargeError(f"image has more than {max_pixels} pixels",
                                 max_pixels=max_pixels) from None
    except Exception as e:  # Pillow raises SyntaxError, OSError, struct.error, ... on junk
        raise CorruptImageError(f"the image header is corrupt ({type(e).__name__})") from None
    with im:
        width, height = im.size
        if width * height > max_pixels:
            raise _too_many(width, height, max_pixels)
        if width < 1 or height < 1:
            raise CorruptImageError(f"the image is {width}x{height}")
        source_format = im.format or "unknown"
        try:
            im.load()  # first frame only for animations
            if source_format == "PNG" and not _png_rows_complete(data):
                raise ValueError("its compressed data ends before the last row")
        except Exception as e:
            raise CorruptImageError(
                f"the {source_format} image is truncated or corrupt ({str(e)[:120]})") from None
        try:
            ImageOps.exif_transpose(im, in_place=True)
        except Exception as e:  # broken EXIF is not worth failing a decodable image over
            log.info("ignoring unreadable EXIF orientation: %s", e)
        rgb, alpha = _to_arrays(im)
    return DecodedImage(rgb=rgb, alpha=alpha, source_format=source_format)


_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
          (0, 1, 1, 2))  # (x0, y0, dx, dy) of each interlace pass
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # by colour type


def _png_rows_complete(data: bytes) -> bool:
    """Whether the image data inflates to every row the header promises.

    Pillow accepts a zlib stream that ends cleanly on a row boundary before the last row
    and leaves the rest black, so a 69-byte file can claim a 1 x 5,000,000 image. Inflating
    again (output counted, not kept) costs about what Pillow's own inflate did.
    """
    i, idat, header = 8, [], None
    while i + 8 <= len(data):
        n, kind = int.from_bytes(data[i:i + 4], "big"), data[i + 4:i + 8]
        body = data[i + 8:i + 8 + n]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        i += 12 + n
    if header is None or len(header) < 13:
        return False
    width, height = int.from_bytes(header[0:4], "big"), int.from_bytes(header[4:8], "big")
    bits = header[8] * _PNG_CHANNELS.get(header[9], 4)
    passes = _ADAM7 if header[12] else ((0, 0, 1, 1),)
    need = 0
    for x0, y0, dx, dy in passes:
        cols, rows = -(-(width - x0) // dx), -(-(height - y0) // dy)
        if cols > 0 and rows > 0:
            need += rows * (1 + -(-cols * bits // 8))  # a filter byte per row
    inflate, got = zlib.decompressobj(), 0
    for chunk in idat:
        while chunk and got < need:
            got += len(inflate.decompress(chunk, 1 << 20))  # bounded output per call
            chunk = inflate.unconsumed_tail
        if got >= need:
            return True
    return got >= need


def fit_size(width: int, height: int, max_pixels: int, min_side: int = 1) -> tuple[int, int]:
    """The largest (w, h) of the same aspect ratio with w * h <= max_pixels (at least 1x1).

    With min_side, a side shorter than it counts as min_side (the network pads it up), so a
    thin strip is shortened along its length until its padded area fits.
    """
    if max(width, min_side) * max(height, min_side) <= max_pixels:
        return width, height
    w, h = width, height
    if w * h > max_pixels:
        scale = (max_pixels / (w * h)) ** 0.5
        w = max(1, int(w * scale))
        h = max(1, min(int(h * scale), max_pixels // w))
        w = max(1, min(w, max_pixels // h))
    if w < min_side:
        h = max(1, min(h, max_pixels // min_side))
    if h < min_side:
        w = max(1, min(w, max_pixels // min_side))
    return w, h


def resize_rgb(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize uint8 (H, W, 3) (or an (H, W) alpha) to size=(w, h): Lanczos down (fast
    reducing path), bicubic up."""
    im = Image.fromarray(rgb)
    if size[0] * size[1] < im.width * im.height:
        im = im.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    else:
        im = im.resize(size, Image.Resampling.BICUBIC)
    return np.asarray(im)


def encode_image(rgb: np.ndarray, alpha: np.ndarray | None, fmt: str, quality: int = 90) -> bytes:
    height, width = rgb.shape[:2]
    limit = {"webp": _WEBP_MAX_SIDE, "jpeg": _JPEG_MAX_SIDE}.get(fmt)
    if limit and max(width, height) > limit:
        raise OutputFormatError(
            f"{fmt} cannot hold a {width}x{height} image (at most {limit} px per side); "
            "ask for png", max_side=limit)
    if alpha is not None and fmt != "jpeg":  # JPEG has no alpha channel: it is dropped
        im = Image.fromarray(np.dstack([rgb, alpha]))
    else:
        im = Image.fromarray(rgb)
    buf = io.BytesIO()
    if fmt == "png":
        im.save(buf, "PNG", compress_level=3)  # far faster than Pillow's 6, barely larger
    elif fmt == "jpeg":
        im.save(buf, "JPEG", quality=quality)
    elif fmt == "webp":
        im.save(buf, "WEBP", quality=quality)
    else:
        raise ValueError(f"unknown output format {fmt!r}")
    return buf.getvalue()
