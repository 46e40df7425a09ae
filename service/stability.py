"""Frames of one stream (a video file, a live camera), stylized with carried CIN statistics.

Frame-by-frame stylization flickers partly because every frame normalises with its own
conditional-instance-norm statistics: a person walking in, a light flickering, sensor noise
all move every layer's (mean, variance), and the whole picture's colours and contrast jump.
The exported model takes and returns those statistics (model/export.py, the tiling path), so
a stream can normalise every frame with a running average instead:

    frame 0 (or a scene cut):  run with its own statistics; running = computed
    frame t:                   every layer normalises with
                               used = momentum * running + (1 - momentum) * its own;
                               running = used

The blend happens inside the pass, layer by layer (the model's `use_stats` input is the
momentum), so each layer's own statistics are those of its input as this frame really
reaches it, and carrying costs no extra inference. (Normalising the whole pass with
`running` and averaging in what it returns instead feeds each layer statistics measured
behind already-carried layers, not the frame's own: that loop overshoots, and at momentum
0.5 it made a still, noisy scene flicker more than frame-by-frame.) A scene cut (a
frame whose small grey thumbnail differs from the previous one by more than `cut_level`
grey levels on average), a new frame size or new style weights start afresh: the old
statistics describe another picture. Frames above the inference budget run in tiles that
all use the running statistics, so a tiled video frame needs no separate statistics pass.
Whether a frame fits the budget, and how it is tiled, is service/pipeline.py's `plan` and
service/tiling.py's tile loop, the ones a single image takes.

This removes the normalisation's share of flicker only; a network that answers a one-pixel
shift with new texture needs a temporal term in training (training/losses.py) or
anti-aliased downsampling (model/network.py) — docs/flicker.md measures each.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from stylebox.service.engine import Engine
from stylebox.service.pipeline import Plan, Stylized, plan, run_plan
from stylebox.service.tiling import TileConfig, pool_stats, stats_input, tile_pass

THUMB = 32  # side of the grey thumbnail that scene cuts are judged on


@dataclass(frozen=True)
class StabilityConfig:
    """How statistics are carried; momentum 0 normalises every frame by itself (off)."""

    momentum: float = 0.9  # the running statistics' weight; 0 = every frame on its own
    cut_level: float = 24.0  # mean |thumbnail difference| (grey levels) that is a scene cut

    def __post_init__(self) -> None:
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.cut_level <= 0:
            raise ValueError(f"cut_level must be > 0, got {self.cut_level}")

    @property
    def enabled(self) -> bool:
        return self.momentum > 0


def thumbnail(rgb: np.ndarray) -> np.ndarray:
    """float32 (THUMB, THUMB) grey box-averaged thumbnail of uint8 (H, W, 3); cheap (strided)."""
    h, w = rgb.shape[:2]
    ys = (np.arange(THUMB * 2) * h) // (THUMB * 2)  # 2x2 samples per thumbnail pixel
    xs = (np.arange(THUMB * 2) * w) // (THUMB * 2)
    grey = rgb[ys][:, xs].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return grey.reshape(THUMB, 2, THUMB, 2).mean(axis=(1, 3))  # (THUMB, THUMB)


class StreamStylizer:
    """Stylizes the frames of ONE stream in order, carrying statistics across them.

    Not thread-safe: one per stream (a video job, a live connection). `reset()` forgets the
    carried statistics (the next frame starts afresh); `cuts` counts scene cuts detected.
    """

    def __init__(self, engine: Engine, config: StabilityConfig | None = None,
                 max_inference_pixels: int = 8_500_000, tiling: TileConfig | None = None) -> None:
        self.engine = engine
        self.config = config or StabilityConfig()
        self.max_inference_pixels = max_inference_pixels
        self.tiling = tiling or TileConfig()
        self.cuts = 0
        self.reset()

    def reset(self) -> None:
        self.running: np.ndarray | None = None  # float32 (S,)
        self._key: tuple | None = None
        self._thumb: np.ndarray | None = None

    @property
    def carries(self) -> bool:
        return self.config.enabled and self.engine.supports_stats

    def plan(self, height: int, width: int) -> Plan:
        """How a frame of this size runs: whole, or above the budget in tiles (carrying) or
        downscaled (frame by frame, as POST /stylize runs an image without tiling)."""
        return plan(self.engine, height, width, self.max_inference_pixels,
                    self.tiling if self.carries else None)

    def __call__(self, rgb: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """uint8 (H, W, 3) frame + float32 (N,) weights -> the stylized uint8 (H, W, 3)."""
        return self.run(rgb, weights).rgb

    def run(self, rgb: np.ndarray, weights: np.ndarray, p: Plan | None = None) -> Stylized:
        """The next frame, as `p` (this stylizer's `plan` for it; made here when None) says."""
        h, w = rgb.shape[:2]
        p = p or self.plan(h, w)
        if not self.carries:  # an old model without statistics, or carrying turned off
            return run_plan(self.engine, rgb, weights, p)
        if p.how == "downscale" or p.image != (w, h):
            raise ValueError(f"a frame that carries statistics runs whole or in tiles, not as "
                             f"{p.how} {p.image}")
        thumb = thumbnail(rgb)
        key = (h, w, np.asarray(weights, np.float32).tobytes())
        cut = self._thumb is not None and \
            float(np.abs(thumb - self._thumb).mean()) > self.config.cut_level
        self.cuts += int(cut and key == self._key)
        if cut or key != self._key:
            self.running = None
        self._key, self._thumb = key, thumb
        m, tiles = self.config.momentum, 0
        t0 = time.perf_counter()
        if p.how == "whole":
            out, computed = self.engine.stylize_stats(rgb, weights, self.running, use=m)
            if self.running is not None:  # what each layer used: the blend
                computed = m * self.running + (1 - m) * computed
        else:
            if self.running is None:  # the first frame: statistics from a downscaled pass
                small = stats_input(rgb, self.tiling.stats_pixels, self.engine.min_side)
                self.running = self.engine.stylize_stats(small, weights)[1]
            # Tiles must share one set of statistics (no seams): every tile takes `running`
            # as it is, and the frame's own, pooled from the tiles, join the average after.
            out, parts, areas = tile_pass(self.engine, rgb, weights, self.running,
                                          self.tiling.tile_size,
                                          self.tiling.margin_for(self.engine))
            computed = m * self.running + (1 - m) * pool_stats(self.engine, parts, areas)
            tiles = len(parts)
        ms = (time.perf_counter() - t0) * 1000
        self.running = np.asarray(computed, np.float32)
        return Stylized(out, (w, h), ms, tiles=tiles)
