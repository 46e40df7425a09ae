"""One image's path, decode -> shrink -> price -> stylize -> controls -> encode: the one that
`POST /stylize`, `stylebox stylize` and `WS /live` frames take.

`plan` decides how an image runs (whole, downscaled, or in tiles) and what that costs, in
pixel-equivalents of network work. The cost counts what the pixel count alone misses: every
run pads its input to the model's `min_side` and its first convolution pads every side, and
every run has a fixed overhead, so a 1-pixel-wide strip of a few million pixels becomes
thousands of mostly padded tiles. `check_cost` refuses (413) an image whose shape costs more
than COST_SLACK times a square image of MAX_PIXELS (and more than one run at the inference
budget), before any network runs; panoramas of normal aspect ratios stay well inside. The
plan it priced is the plan that runs (`run_plan`): an image is planned once.

`image_path` is the path as a generator of `Step`s, each a function to call and the kind
of work it is (codec or network): `run_steps` calls them in order (the CLI), `arun_steps`
runs each in a worker thread under the limiter for its kind (the routes), so the order of
the steps, what each needs and what is skipped are written once. A `Runner` decides how
the network step runs: `OneImage` (an image on its own) or a stream's `StreamStylizer`
(service/stability.py, statistics carried from frame to frame).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
from anyio import CapacityLimiter, to_thread

from stylebox.service.controls import Controls, apply_controls, shrink_decoded
from stylebox.service.engine import Engine
from stylebox.service.http.errors import ImageTooLargeError
from stylebox.service.imaging import decode_image, encode_image, fit_size, resize_rgb
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
    image: tuple[int, int]  # (w, h) of the image planned
    tiling: TileConfig | None = None  # how the tiles run (how == "tiles")


def _padded(n: int, min_side: int) -> int:
    return max(n, min_side) + EDGE_PAD


def run_cost(height: int, width: int, min_side: int) -> int:
    return _padded(height, min_side) * _padded(width, min_side) + RUN_OVERHEAD


def fits(engine: Engine, height: int, width: int, max_inference_pixels: int) -> bool:
    """Whether one run at full size fits the inference budget, as the network sees the
    image (a side under the model's min_side is padded up to it)."""
    ms = engine.min_side
    return max(height, ms) * max(width, ms) <= max_inference_pixels


def plan(engine: Engine, height: int, width: int, max_inference_pixels: int,
         tiling: TileConfig | None) -> Plan:
    """How an image of height x width runs on `engine`, and what it costs."""
    ms, image = engine.min_side, (width, height)
    if fits(engine, height, width, max_inference_pixels):
        return Plan("whole", image, 1, run_cost(height, width, ms), image)
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
        return Plan("tiles", image, len(rows) * len(cols) + 1, cost, image, tiling)
    w, h = fit_size(width, height, max_inference_pixels, ms)
    return Plan("downscale", (w, h), 1, run_cost(h, w, ms), image)


def cost_limit(engine: Engine, settings: Settings) -> int:
    """What the largest image of normal shape costs (a square of max_pixels), with slack;
    never less than one run at the inference budget, which is affordable by definition."""
    side = math.isqrt(settings.max_pixels)
    square = plan(engine, side, side, settings.max_inference_pixels,
                  TileConfig.from_settings(settings))
    one_run = math.isqrt(settings.max_inference_pixels)
    return max(int(COST_SLACK * square.cost), run_cost(one_run, one_run, engine.min_side))


def refuse_costly(engine: Engine, p: Plan, settings: Settings) -> Plan:
    """`p` itself; ImageTooLargeError (413) if it costs more than one request may."""
    limit = cost_limit(engine, settings)
    if p.cost > limit:
        width, height = p.image
        raise ImageTooLargeError(
            f"a {width}x{height} image needs {p.runs} network runs ({p.cost:,} padded "
            f"pixel-equivalents), more than this server does for one image (up to {limit:,}); "
            "very thin images cost far more than their pixel count: crop or resize it",
            width=width, height=height, runs=p.runs, cost=p.cost, max_cost=limit)
    return p


def check_cost(engine: Engine, height: int, width: int, settings: Settings) -> Plan:
    """The plan for this image as the settings run it; ImageTooLargeError (413) if its
    shape costs too much."""
    return refuse_costly(engine, plan(engine, height, width, settings.max_inference_pixels,
                                      TileConfig.from_settings(settings)), settings)


def run_plan(engine: Engine, rgb: np.ndarray, weights: np.ndarray, p: Plan) -> Stylized:
    """Stylize as `p` (planned for this image) says: whole; in tiles at full size; or on a
    downscaled copy resized back."""
    height, width = rgb.shape[:2]
    if p.image != (width, height):
        raise ValueError(f"a plan for {p.image[0]}x{p.image[1]} given a {width}x{height} image")
    if p.how == "tiles":
        assert p.tiling is not None
        # All tiles and the statistics pass run here, in the one inference slot this
        # request holds: a tiled image is one request for admission and concurrency.
        out, n, ms = stylize_tiled(engine, rgb, weights, p.tiling)
        return Stylized(out, (width, height), ms, tiles=n)
    x = rgb if p.size == (width, height) else resize_rgb(rgb, p.size)
    t0 = time.perf_counter()
    out = engine.stylize(x, weights)
    ms = (time.perf_counter() - t0) * 1000
    if p.size != (width, height):
        out = resize_rgb(out, (width, height))
    return Stylized(out, p.size, ms)


def stylize_fitted(engine: Engine, rgb: np.ndarray, weights: np.ndarray,
                   max_inference_pixels: int, tiling: TileConfig | None = None) -> Stylized:
    """Plan and run: whole; above max_inference_pixels (padding counted) in tiles at full
    size (with `tiling` and a model exported with statistics), else on a downscaled copy
    resized back."""
    p = plan(engine, *rgb.shape[:2], max_inference_pixels, tiling)
    return run_plan(engine, rgb, weights, p)


# -- the path ---------------------------------------------------------------------------------

class Runner(Protocol):
    """How the network step runs: plans an image of a size, then runs that plan."""

    engine: Engine

    def plan(self, height: int, width: int) -> Plan: ...

    def run(self, rgb: np.ndarray, weights: np.ndarray, p: Plan) -> Stylized: ...


class OneImage:
    """An image on its own, tiled or downscaled above the budget as the settings say."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.max_inference_pixels = settings.max_inference_pixels
        self.tiling = TileConfig.from_settings(settings)

    def plan(self, height: int, width: int) -> Plan:
        return plan(self.engine, height, width, self.max_inference_pixels, self.tiling)

    def run(self, rgb: np.ndarray, weights: np.ndarray, p: Plan) -> Stylized:
        return run_plan(self.engine, rgb, weights, p)


Work = Literal["codec", "network"]


@dataclass(frozen=True)
class Step:
    """One call on the path, and the kind of work it is (which limiter bounds it)."""

    work: Work
    fn: Callable[..., Any]
    args: tuple[Any, ...]


@dataclass
class Made:
    """What the path made: the encoded image, the (w, h) it was stylized at (after
    max_side) and how the network ran."""

    body: bytes
    size: tuple[int, int]
    stylized: Stylized


def _priced(runner: Runner, height: int, width: int, settings: Settings) -> Plan:
    return refuse_costly(runner.engine, runner.plan(height, width), settings)


def image_path(data: bytes, runner: Runner, weights: np.ndarray, controls: Controls, *,
               settings: Settings, fmt: str, quality: int,
               max_pixels: int | None = None) -> Generator[Step, Any, Made]:
    """Decode (at most `max_pixels`, default settings.max_pixels: 413 above), shrink to
    controls.max_side, price (413 above the cost limit), stylize as priced, apply the
    controls, encode as `fmt` (the alpha channel kept where the format has one)."""
    decoded = yield Step("codec", decode_image, (data, max_pixels or settings.max_pixels))
    del data  # the compressed bytes are not needed past this point
    if controls.max_side is not None:
        decoded = yield Step("codec", shrink_decoded, (decoded, controls.max_side))
    # Priced before it queues for the network: a thin strip's padding is refused here (413).
    p = yield Step("codec", _priced, (runner, *decoded.rgb.shape[:2], settings))
    result = yield Step("network", runner.run, (decoded.rgb, weights, p))
    if controls.changes_pixels:  # strength < 1 or preserve_color: blend with the photo
        result.rgb = yield Step("codec", apply_controls, (decoded.rgb, result.rgb, controls))
    body = yield Step("codec", encode_image, (result.rgb, decoded.alpha, fmt, quality))
    return Made(body, decoded.size, result)


def run_steps(steps: Generator[Step, Any, Made]) -> Made:
    """The path in this thread, step after step."""
    step = next(steps)
    while True:
        value = step.fn(*step.args)
        try:
            step = steps.send(value)
        except StopIteration as done:
            return done.value


async def arun_steps(steps: Generator[Step, Any, Made],
                     limiters: Mapping[Work, CapacityLimiter]) -> Made:
    """The path with every step in a worker thread under its kind's limiter: the event loop
    never decodes, runs the network or encodes."""
    step = next(steps)
    while True:
        value = await to_thread.run_sync(step.fn, *step.args, limiter=limiters[step.work])
        try:
            step = steps.send(value)
        except StopIteration as done:
            return done.value
