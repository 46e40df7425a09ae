"""One stylization, sized to the inference budget: shared by the API and the CLI."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from service.engine import Engine
from service.imaging import fit_size, resize_rgb


@dataclass
class Stylized:
    rgb: np.ndarray  # uint8 (H, W, 3) at the input's size
    inference_size: tuple[int, int]  # (w, h) the network actually ran at
    inference_ms: float  # network time only (resizing excluded)

    @property
    def downscaled(self) -> bool:
        return self.inference_size != (self.rgb.shape[1], self.rgb.shape[0])


def stylize_fitted(engine: Engine, rgb: np.ndarray, weights: np.ndarray,
                   max_inference_pixels: int) -> Stylized:
    """Stylize; above max_inference_pixels run on a downscaled copy and resize back."""
    height, width = rgb.shape[:2]
    size = fit_size(width, height, max_inference_pixels)
    x = rgb if size == (width, height) else resize_rgb(rgb, size)
    t0 = time.perf_counter()
    out = engine.stylize(x, weights)
    ms = (time.perf_counter() - t0) * 1000
    if size != (width, height):
        out = resize_rgb(out, (width, height))
    return Stylized(out, size, ms)
