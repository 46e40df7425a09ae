"""One stylization, sized to the inference budget and priced first: shared by the API and the CLI.

`plan` decides how an image runs (whole, downscaled, or in tiles) and what that costs, in
pixel-equivalents of network work. The cost counts what the pixel count alone misses: every
run pads its input to the model's `min_side` and its first convolution pads every side, and
every run has a fixed overhead, so a 1-pixel-wide strip of a few million pixels becomes
thousands of mostly padded tiles. `check_cost` refuses (413) an image whose shape costs more
than COST_SLACK times a square image of MAX_PIXELS (and more than one run at the inference
budget), before any network runs; panoramas of normal aspect ratios stay well inside.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Literal

import numpy as np

from stylebox.service.engine import Engine
from stylebox.service.errors import ImageTooLargeError
from stylebox.service.imaging import fit_size, resize_rgb
from stylebox.service.settings import Settings
from stylebox.service.tiling import TileConfig, stylize_tiled, tile_spans

EDGE_PAD = 8  # px per axis: the first 9x9 convolution's reflection padding, both sides
RUN_OVERHEAD = 1000  # px-equivalents: a run's fixed cost (about that of 1,000 pixels)
COST_SLACK = 1.5  # a request may cost this much more than a square image of max_pixels


@dataclass
class Stylized:
    rgb: np.ndarray  # uint8 (H, W, 3) at the input's size
    inference_size: tuple[int, int]  # (w, h) the network actually ran at
    inference_ms: float  # network time only (resizing excluded)
    tiles: int = 0  # > 0: run at full size in this many tiles (service/tiling.py)


@dataclass(frozen=True)
class Plan:
    how: Literal["whole", "downscale", "tiles"]
    size: tuple[int, int]  # (w, h) the network runs at; the image's own size when tiled
    runs: int  # network runs (tiles + the statistics pass when tiled)
    cost: int  # pixel-equivalents of work, padding and overheads included


def _padded(n: int, min_side: int) -> int:
    return max(n, min_side) + EDGE_PAD


def run_cost(height: int, width: int, min_side: int) -> int:
    return _padded(height, min_side) * _padded(width, min_side) + RUN_OVERHEAD


def plan(engine: Engine, height: int, width: int, max_inference_pixels: int,
         tiling: TileConfig | None) -> Plan:
    """How an image of height x width runs on `engine`, and what it costs."""
    ms = engine.min_side
    if max(height, ms) * max(width, ms) <= max_inference_pixels:  # as the network sees it
        return Plan("whole", (width, height), 1, run_cost(height, width, ms))
    if tiling is not None and engine.supports_stats:
        margin = tiling.margin_for(engine)
        rows = [s1 - s0 for s0, s1, _, _ in tile_spans(height, tiling.tile_size, margin,
                                                        engine.grid)]
        cols = [s1 - s0 for s0, s1, _, _ in tile_spans(width, tiling.tile_size, margin,
                                                        engine.grid)]
        sw, sh = fit_size(width, height, tiling.stats_pixels, ms)  # the statistics pass
        # Sum over the tile grid of run_cost, which is a product: sum(rows) x sum(cols).
        cost = (sum(_padded(r, ms) for r in rows) * sum(_padded(c, ms) for c in cols)
                + RUN_OVERHEAD * len(rows) * len(cols) + run_cost(sh, sw, ms))
        return Plan("tiles", (width, height), len(rows) * len(cols) + 1, cost)
    w, h = fit_size(width, height, max_inference_pixels, ms)
    return Plan("downscale", (w, h), 1, run_cost(h, w, ms))


def cost_limit(engine: Engine, settings: Settings) -> int:
    """What the largest image of normal shape costs (a square of max_pixels), with slack;
    never less than one run at the inference budget, which is affordable by definition."""
    side = math.isqrt(settings.max_pixels)
    square = plan(engine, side, side, settings.max_inference_pixels,
                  TileConfig.from_settings(settings))
    one_run = math.isqrt(settings.max_inference_pixels)
    return max(int(COST_SLACK * square.cost), run_cost(one_run, one_run, engine.min_side))


def check_cost(engine: Engine, height: int, width: int, settings: Settings) -> Plan:
    """The plan for this image; ImageTooLargeError (413) if its shape costs too much."""
    p = plan(engine, height, width, settings.max_inference_pixels,
             TileConfig.from_settings(settings))
    limit = cost_limit(engine, settings)
    if p.cost > limit:
        raise ImageTooLargeError(
            f"a {width}x{height} image needs {p.runs} network runs ({p.cost:,} padded "
            f"pixel-equivalents), more than this server does for one image (up to {limit:,}); "
            "very thin images cost far more than their pixel count: crop or resize it",
            width=width, height=height, runs=p.runs, cost=p.cost, max_cost=limit)
    return p


def stylize_fitted(engine: Engine, rgb: np.ndarray, weights: np.ndarray,
                   max_inference_pixels: int, tiling: TileConfig | None = None) -> Stylized:
    """Stylize as `plan` says: whole; above max_inference_pixels (padding counted) in tiles
    at full size (with `tiling` and a model exported with statistics), else on a downscaled
    copy resized back."""
    height, width = rgb.shape[:2]
    p = plan(engine, height, width, max_inference_pixels, tiling)
    if p.how == "tiles":
        # All tiles and the statistics pass run here, in the one inference slot this
        # request holds: a tiled image is one request for admission and concurrency.
        out, n, ms = stylize_tiled(engine, rgb, weights, tiling)
        return Stylized(out, (width, height), ms, tiles=n)
    x = rgb if p.size == (width, height) else resize_rgb(rgb, p.size)
    t0 = time.perf_counter()
    out = engine.stylize(x, weights)
    ms = (time.perf_counter() - t0) * 1000
    if p.size != (width, height):
        out = resize_rgb(out, (width, height))
    return Stylized(out, p.size, ms)
