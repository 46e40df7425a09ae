"""Seam-free tiled inference for images above the inference budget (no torch).

Every conditional-instance-norm layer normalises with its input's statistics, so tiles that
each use their own statistics disagree where they meet: seams. Here every tile uses ONE set
of per-layer statistics instead:

1. the whole image, downscaled to about ``stats_pixels`` (1 MP), runs once through the model,
   which returns the (mean, variance) of every CIN layer (`computed_stats`, model/export.py);
2. the full-resolution image is cut into tiles of at most ``tile_size`` px a side, each run
   with those statistics (use_stats = 1), and only each tile's core is kept.

A tile's core has ``margin`` pixels of real image context on every side (fewer only at the
image border, where the whole image has none either). With margin >= the network's receptive
radius (recorded in the card by the export) and tile origins on the model's grid (4 px for
the two stride-2 convolutions, 8 when the network runs at half resolution: ``engine.grid``,
from the card), the core is computed exactly as the whole image would compute it given the
same statistics: tiling itself adds no error, only the statistics estimate does
(tests/service/test_tiling.py). Memory is bounded by the tile size, not the image size.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from stylebox.model.contract import DEFAULT_GRID
from stylebox.service.engine import Engine
from stylebox.service.imaging import fit_size, resize_rgb
from stylebox.service.settings import Settings

MIN_CORE = 16  # a tile keeps at least this much, however large the margin


@dataclass(frozen=True)
class TileConfig:
    tile_size: int = 1024  # side of one inference tile, context included
    margin: int = 0  # context per side; 0 = the model's receptive radius (from its card)
    stats_pixels: int = 1_000_000  # the statistics pass runs at about this many pixels

    @classmethod
    def from_settings(cls, settings: Settings) -> TileConfig | None:
        """None when STYLEBOX_LARGE_IMAGES=downscale."""
        if settings.large_images != "tile":
            return None
        return cls(settings.tile_size, settings.tile_margin, settings.tile_stats_pixels)

    def margin_for(self, engine: Engine) -> int:
        m = self.margin or engine.receptive_radius
        return -(-m // engine.grid) * engine.grid  # up to the grid: tile origins stay on it


@dataclass(frozen=True)
class Tile:
    src: tuple[slice, slice]  # the region fed to the model (core plus context)
    dst: tuple[slice, slice]  # the core, in image coordinates
    crop: tuple[slice, slice]  # the core, in the tile's output


def core_size(tile_size: int, margin: int, grid: int = DEFAULT_GRID) -> int:
    """The side of the part of a tile that is kept: on the grid, at least MIN_CORE."""
    return max(MIN_CORE, (tile_size - 2 * margin) // grid * grid)


def tile_spans(n: int, tile_size: int, margin: int,
               grid: int = DEFAULT_GRID) -> list[tuple[int, int, int, int]]:
    """Along one axis of n pixels: (src0, src1, dst0, dst1) of each tile, context included."""
    core = core_size(tile_size, margin, grid)
    return [(max(0, a - margin), min(n, a + core + margin), a, min(n, a + core))
            for a in range(0, n, core)]


def plan_tiles(height: int, width: int, tile_size: int, margin: int,
               grid: int = DEFAULT_GRID) -> list[Tile]:
    """Cores of one size on the model's grid, covering the image, each with its context."""
    tiles = []
    for sy0, sy1, dy0, dy1 in tile_spans(height, tile_size, margin, grid):
        for sx0, sx1, dx0, dx1 in tile_spans(width, tile_size, margin, grid):
            tiles.append(Tile((slice(sy0, sy1), slice(sx0, sx1)),
                              (slice(dy0, dy1), slice(dx0, dx1)),
                              (slice(dy0 - sy0, dy1 - sy0), slice(dx0 - sx0, dx1 - sx0))))
    return tiles


def stats_input(rgb: np.ndarray, stats_pixels: int, min_side: int = 1) -> np.ndarray:
    """The image as the statistics pass sees it: resized to about stats_pixels (a side
    below min_side counted as the network pads it)."""
    height, width = rgb.shape[:2]
    size = fit_size(width, height, stats_pixels, min_side)
    return rgb if size == (width, height) else resize_rgb(rgb, size)


def tile_pass(engine: Engine, rgb: np.ndarray, weights: np.ndarray, stats: np.ndarray | None,
              tile_size: int, margin: int) -> tuple[np.ndarray, list[np.ndarray], list[int]]:
    """The tile loop: rgb (H, W, 3) stylized tile by tile, every tile normalised with
    `stats`; (image, the statistics each tile computed, each tile's area in pixels)."""
    out = np.empty_like(rgb)  # (H, W, 3) uint8: the only full-size buffer besides the input
    parts, areas = [], []
    for t in plan_tiles(rgb.shape[0], rgb.shape[1], tile_size, margin, engine.grid):
        styled, computed = engine.stylize_stats(rgb[t.src], weights, stats)
        out[t.dst] = styled[t.crop]
        parts.append(computed)
        areas.append((t.src[0].stop - t.src[0].start) * (t.src[1].stop - t.src[1].start))
    return out, parts, areas


def run_tiles(engine: Engine, rgb: np.ndarray, weights: np.ndarray, stats: np.ndarray | None,
              tile_size: int, margin: int) -> tuple[np.ndarray, int]:
    """Stylize rgb (H, W, 3) tile by tile with the given statistics; (image, tile count).

    stats=None lets every tile normalise with its own statistics: naive tiling, with seams
    (stylebox/tiledemo.py shows them)."""
    out, parts, _ = tile_pass(engine, rgb, weights, stats, tile_size, margin)
    return out, len(parts)


def pool_stats(engine: Engine, parts: list[np.ndarray], areas: list[int]) -> np.ndarray:
    """The whole image's per-layer (mean, var) from each tile's own, weighted by the tile
    areas: var = E[var_i] + Var[mean_i]. A card without the layers' widths
    (`engine.stats_channels` None) gets the area-weighted average of everything."""
    a = np.asarray(areas, np.float64)[:, None] / sum(areas)  # (T, 1)
    s = np.stack(parts).astype(np.float64)  # (T, S)
    if engine.stats_channels is None:
        return (a * s).sum(0).astype(np.float32)
    out, lo = np.empty(s.shape[1], np.float64), 0
    for c in engine.stats_channels:
        mean, var = s[:, lo:lo + c], s[:, lo + c:lo + 2 * c]
        m = (a * mean).sum(0)
        out[lo:lo + c] = m
        out[lo + c:lo + 2 * c] = (a * (var + (mean - m) ** 2)).sum(0)
        lo += 2 * c
    return out.astype(np.float32)


def stylize_tiled(engine: Engine, rgb: np.ndarray, weights: np.ndarray,
                  cfg: TileConfig) -> tuple[np.ndarray, int, float]:
    """The statistics pass, then the tiles: (image, tile count, model ms incl. both)."""
    small = stats_input(rgb, cfg.stats_pixels, engine.min_side)  # resizing is not model time
    t0 = time.perf_counter()
    stats = engine.stylize_stats(small, weights)[1]
    out, n = run_tiles(engine, rgb, weights, stats, cfg.tile_size, cfg.margin_for(engine))
    return out, n, (time.perf_counter() - t0) * 1000
