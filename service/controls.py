"""Creative controls applied around the network: `strength`, `preserve_color`, `max_side`.

The exported model has no content-preserving style slot (it was not trained with one), and
interpolating its γ/β towards γ=1, β=0 does not give the photo back: the generator is not an
autoencoder at identity γ/β, and scaling the `style_weights` row scales γ and β towards 0,
which flattens the image. So both controls are pixel maths on (photo, stylized) pairs:

- `strength` s in [0, 1] blends photo and stylized image in **Oklab** (Ottosson 2020), a
  perceptually uniform space: out = lab(photo) + s * (lab(target) - lab(photo)). Halfway
  looks halfway, and complementary colours pass through less grey than an sRGB cross-fade.
  s = 0 returns the photo exactly and s = 1 the network's output exactly.
- `preserve_color` takes the lightness L from the stylized image and the chroma (a, b) from
  the photo (a luminance-only transfer, as in Gatys et al. 2016, "Preserving colour in
  neural artistic style transfer", done in Oklab instead of YIQ).
- `max_side` downscales the photo (Lanczos) before stylizing; the result has that size.

Each control's bounds are one `Bound` here (`STRENGTH`, `MAX_SIDE`, and the encoder's
`QUALITY`): `Controls` checks them, the routes' `Query` parameters (and so the OpenAPI
schema) take theirs from `Bound.query`, `WS /live` checks its control messages and
`stylebox stylize` its flags with the same ones.

Work is done in bands of rows so memory stays at a few float32 bands, not the whole image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from stylebox.service.http.errors import StyleboxError
from stylebox.service.imaging import DecodedImage, resize_rgb

_BAND_PIXELS = 1 << 18  # rows per band so that a band holds about 262k pixels

# Linear sRGB -> LMS, and cube-rooted LMS -> Lab (Ottosson's Oklab matrices, D65).
_M1 = np.array([[0.4122214708, 0.5363325363, 0.0514459929],
                [0.2119034982, 0.6806995451, 0.1073969566],
                [0.0883024619, 0.2817188376, 0.6299787005]], dtype=np.float64)
_M2 = np.array([[0.2104542553, 0.7936177850, -0.0040720468],
                [1.9779984951, -2.4285922050, 0.4505937099],
                [0.0259040371, 0.7827717662, -0.8086757660]], dtype=np.float64)
# Row-vector form (pixels @ M.T); inverses computed here so the round trip is exact.
_TO_LMS, _TO_LAB = _M1.T.astype(np.float32), _M2.T.astype(np.float32)
_FROM_LAB = np.linalg.inv(_M2).T.astype(np.float32)
_FROM_LMS = np.linalg.inv(_M1).T.astype(np.float32)


def _srgb_lut() -> np.ndarray:
    c = np.arange(256, dtype=np.float64) / 255.0
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return lin.astype(np.float32)


_TO_LINEAR = _srgb_lut()  # uint8 sRGB -> linear light, by table lookup


class ControlError(StyleboxError):
    status, title, slug = 422, "Invalid control value", "invalid-control"


@dataclass(frozen=True)
class Bound:
    """A numeric control's closed range: an integer one, or a finite number (never a bool)."""

    name: str
    low: int | float
    high: int | float
    integer: bool = False

    def ok(self, value: object) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.integer and not isinstance(value, int):
            return False
        return math.isfinite(value) and self.low <= value <= self.high

    def problem(self, value: object) -> str:
        """What is wrong with a value that is not `ok`, naming the control."""
        kind = "an integer" if self.integer else "a number"
        return f"{self.name} must be {kind} in [{self.low}, {self.high}], got {str(value)[:40]}"

    def check(self, value: object) -> None:
        """ControlError (422) naming the control when `value` is out of bounds."""
        if not self.ok(value):
            raise ControlError(self.problem(value), parameter=self.name)

    def query(self) -> dict[str, object]:
        """The bounds as FastAPI `Query` arguments: enforced and in the OpenAPI schema."""
        return {"ge": self.low, "le": self.high,
                **({} if self.integer else {"allow_inf_nan": False})}


STRENGTH = Bound("strength", 0, 1)  # 0 = the photo, 1 = the network's output
MAX_SIDE = Bound("max_side", 16, 16384, integer=True)  # px, the longer side first
QUALITY = Bound("quality", 1, 100, integer=True)  # JPEG/WebP quality of the encoder


@dataclass(frozen=True)
class Controls:
    strength: float = 1.0
    preserve_color: bool = False
    max_side: int | None = None

    def __post_init__(self) -> None:
        STRENGTH.check(self.strength)
        if self.max_side is not None:
            MAX_SIDE.check(self.max_side)

    @property
    def changes_pixels(self) -> bool:
        """False when the network's output is returned as it is."""
        return self.strength < 1.0 or self.preserve_color

    @property
    def summary(self) -> str:
        """For the X-Stylebox-Controls header."""
        side = self.max_side if self.max_side is not None else "none"
        return (f"strength={self.strength:.4g}; preserve_color={int(self.preserve_color)}; "
                f"max_side={side}")


def srgb_to_oklab(rgb: np.ndarray) -> np.ndarray:
    """uint8 (..., 3) sRGB -> float32 (..., 3) Oklab (L in [0, 1], a/b roughly ±0.4)."""
    lms = _TO_LINEAR[rgb] @ _TO_LMS
    return np.cbrt(lms) @ _TO_LAB


def oklab_to_srgb(lab: np.ndarray) -> np.ndarray:
    """float32 (..., 3) Oklab -> uint8 (..., 3) sRGB; out-of-gamut colours are clipped."""
    lms = (lab @ _FROM_LAB) ** 3
    lin = np.clip(lms @ _FROM_LMS, 0.0, 1.0)
    srgb = np.where(lin <= 0.0031308, lin * 12.92, 1.055 * np.power(lin, 1 / 2.4) - 0.055)
    return np.rint(srgb * 255.0).astype(np.uint8)


def _blend_band(photo: np.ndarray, styled: np.ndarray, strength: float,
                preserve_color: bool) -> np.ndarray:
    p, s = srgb_to_oklab(photo), srgb_to_oklab(styled)  # (h, W, 3) each
    if preserve_color:
        s[..., 1:] = p[..., 1:]  # the photo's chroma under the style's lightness
    return oklab_to_srgb(p + np.float32(strength) * (s - p))


def apply_controls(photo: np.ndarray, styled: np.ndarray, controls: Controls) -> np.ndarray:
    """Combine uint8 (H, W, 3) photo and stylized image as the controls say."""
    if photo.shape != styled.shape:
        raise ValueError(f"photo {photo.shape} and stylized {styled.shape} differ in shape")
    if not controls.changes_pixels:
        return styled
    if controls.strength == 0.0:
        return photo.copy()  # exact, rather than an Oklab round trip
    height, width = photo.shape[:2]
    out = np.empty_like(styled)
    rows = max(1, _BAND_PIXELS // max(1, width))
    for y in range(0, height, rows):
        out[y:y + rows] = _blend_band(photo[y:y + rows], styled[y:y + rows],
                                      controls.strength, controls.preserve_color)
    return out


def limit_side(rgb: np.ndarray, alpha: np.ndarray | None,
               max_side: int | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Downscale (H, W, 3) RGB and its (H, W) alpha so that max(H, W) <= max_side."""
    height, width = rgb.shape[:2]
    if max_side is None or max(height, width) <= max_side:
        return rgb, alpha
    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))  # (w, h) for Pillow
    return resize_rgb(rgb, size), None if alpha is None else resize_rgb(alpha, size)


def shrink_decoded(decoded: DecodedImage, max_side: int | None) -> DecodedImage:
    """`limit_side` for a decoded upload (its alpha follows the RGB)."""
    rgb, alpha = limit_side(decoded.rgb, decoded.alpha, max_side)
    return decoded if rgb is decoded.rgb else replace(decoded, rgb=rgb, alpha=alpha)
