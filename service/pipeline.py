"""One stylization, sized to the inference budget: shared by the API and the CLI."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from stylebox.service.engine import Engine
from stylebox.service.imaging import fit_size, resize_rgb
from stylebox.service.tiling import TileConfig, stylize_tiled


@dataclass
class Stylized:
    rgb: np.ndarray  # uint8 (H, W, 3) at the input's size
    inference_size: tuple[int, int]  # (w, h) the network actually ran at
    inference_ms: float  # network time only (resizing excluded)
    tiles: int = 0  # > 0: run at full size in this many tiles (service/tiling.py)


def stylize_fitted(engine: Engine, rgb: np.ndarray, weights: np.ndarray,
                   max_inference_pixels: int, tiling: TileConfig | None = None) -> Stylized:
    """Stylize; above max_inference_pixels run in tiles at full size (with `tiling` and a
    model exported with statistics), else on a downscaled copy resized back."""
    height, width = rgb.shape[:2]
    if tiling is not None and engine.supports_stats and width * height > max_inference_pixels:
        # All tiles and the statistics pass run here, in the one inference slot this
        # request holds: a tiled image is one request for admission and concurrency.
        out, n, ms = stylize_tiled(engine, rgb, weights, tiling)
        return Stylized(out, (width, height), ms, tiles=n)
    size = fit_size(width, height, max_inference_pixels)
    x = rgb if size == (width, height) else resize_rgb(rgb, size)
    t0 = time.perf_counter()
    out = engine.stylize(x, weights)
    ms = (time.perf_counter() - t0) * 1000
    if size != (width, height):
        out = resize_rgb(out, (width, height))
    return Stylized(out, size, ms)
