"""Style previews: one sample picture, stylized by the loaded model, once per style.

The sample is the real photo the model's card carries (`stylebox export --sample-photo`,
128 px, a few KB), so the page shows each style on a photograph; a model without one gets a
scene drawn by code (sky, sun, hills, a lake, a house). Previews are made lazily on first
request and kept per engine (a new engine, e.g. in tests, gets its own cache); at 128 px each
costs a few milliseconds, so start-up stays as fast as before. A model whose card is
extended by add-style still gets previews of its new styles: they are computed, not stored.
"""

from __future__ import annotations

import base64
import io
import threading
import weakref
from functools import cache

import numpy as np
from PIL import Image

from stylebox.service.engine import Engine

PREVIEW_SIZE = 128  # px, square


@cache
def sample_image(size: int = PREVIEW_SIZE) -> np.ndarray:
    """The fixed sample scene, uint8 (size, size, 3); deterministic."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / (size - 1)  # (H, W) each in [0, 1]
    sky = np.stack([0.35 + 0.5 * y, 0.55 + 0.35 * y, 0.95 - 0.1 * y], -1)  # (H, W, 3)
    img = sky.copy()
    sun = (x - 0.72) ** 2 + (y - 0.25) ** 2 < 0.11 ** 2
    img[sun] = (1.0, 0.85, 0.3)
    far = y > 0.52 - 0.10 * np.sin(6.0 * x + 0.5)
    img[far] = np.stack([0.35 + 0.1 * x, 0.45 + 0.0 * x, 0.6 - 0.1 * x], -1)[far]
    near = y > 0.62 - 0.06 * np.sin(9.0 * x + 2.0)
    img[near] = np.stack([0.2 + 0.2 * y, 0.55 - 0.2 * y, 0.2 + 0 * y], -1)[near]
    lake = (y > 0.8) & (np.abs(x - 0.35) < 0.32 - 0.5 * (y - 0.8))
    ripples = 0.05 * np.sin(60.0 * y)
    img[lake] = np.stack([0.15 + ripples, 0.4 + ripples, 0.75 + 0 * y], -1)[lake]
    wall = (np.abs(x - 0.78) < 0.07) & (y > 0.60) & (y < 0.74)
    img[wall] = (0.92, 0.88, 0.78)
    roof = (y > 0.52) & (y <= 0.60) & (np.abs(x - 0.78) < 0.09 * (y - 0.52) / 0.08 + 0.005)
    img[roof] = (0.7, 0.15, 0.1)
    door = (np.abs(x - 0.78) < 0.015) & (y > 0.67) & (y < 0.74)
    img[door] = (0.3, 0.18, 0.1)
    return np.rint(np.clip(img, 0, 1) * 255).astype(np.uint8)


def card_sample(engine: Engine) -> np.ndarray | None:
    """The photo embedded in the model card, uint8 (H, W, 3), or None (none, or unreadable)."""
    entry = engine.card.export.get("sample")
    if not isinstance(entry, dict) or not isinstance(entry.get("jpeg_base64"), str):
        return None
    try:
        with Image.open(io.BytesIO(base64.b64decode(entry["jpeg_base64"]))) as im:
            rgb = np.asarray(im.convert("RGB"))
    except (ValueError, OSError):  # a damaged card must not take the page down
        return None
    return rgb if min(rgb.shape[:2]) >= engine.min_side else None


def _png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG", compress_level=6)  # small and made once: compress
    return buf.getvalue()


@cache
def sample_png() -> bytes:
    return _png(sample_image())


class PreviewCache:
    """PNG bytes per (engine, style name); thread-safe, each preview computed once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_engine: weakref.WeakKeyDictionary[Engine, dict[str, bytes]] = (
            weakref.WeakKeyDictionary())
        # engine -> (RGB, PNG) of its sample: the card's JPEG is decoded once per engine
        self._samples: weakref.WeakKeyDictionary[Engine, tuple[np.ndarray, bytes]] = (
            weakref.WeakKeyDictionary())

    def _sample(self, engine: Engine) -> tuple[np.ndarray, bytes]:
        with self._lock:
            cached = self._samples.get(engine)
        if cached is None:
            rgb = card_sample(engine)
            cached = (sample_image(), sample_png()) if rgb is None else (rgb, _png(rgb))
            with self._lock:
                self._samples[engine] = cached
        return cached

    def sample(self, engine: Engine) -> np.ndarray:
        """What this engine's previews are made from: its card's photo, else the drawn scene."""
        return self._sample(engine)[0]

    def sample_png(self, engine: Engine) -> bytes:
        return self._sample(engine)[1]

    def get(self, engine: Engine, name: str) -> bytes:
        with self._lock:
            cached = self._by_engine.setdefault(engine, {}).get(name)
        if cached is not None:
            return cached
        png = _png(engine.stylize(self.sample(engine), engine.one_hot(engine.card.index(name))))
        with self._lock:  # two first requests may both compute; the result is the same
            self._by_engine.setdefault(engine, {})[name] = png
        return png
