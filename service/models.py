"""The served models: MODEL_PATH's, named `default`, and the EXTRA_MODELS beside it.

Every model is one `Engine`, loaded the one way (service/backends `load_engine`, on settings
whose MODEL_PATH is that model's file), kept in the app's state by name
(`ServiceState.engines`) and swapped by name on a reload (service/modelwatch.py). Each is
timed once as it loads, at LIVE_SIZE (a webcam's usual 640 x 480): the number `GET /models`
and the page show, and what LIVE_MODEL=auto chooses the live sessions' model by
(`choose_live`). A server with one model has nothing to choose, so it starts as fast as
before and times its model on the first `GET /models` instead (`timed_at_start`). A request
names its model with `?model=NAME`; none is `default` (a live session: the live model).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

import numpy as np

from stylebox.service.backends import load_engine
from stylebox.service.engine import Engine, ModelLoadError
from stylebox.service.settings import DEFAULT_MODEL, LIVE_FPS, LIVE_SIZE, Settings

log = logging.getLogger("stylebox.service")

LIVE_SIZE_NAME = f"{LIVE_SIZE[1]}x{LIVE_SIZE[0]}"  # "640x480", as warm-up names sizes
_TIMED_RUNS = 2  # the faster of two: one run alone may meet a page fault or a busy core


def settings_for(settings: Settings, name: str) -> Settings:
    """The settings that load model `name`: its file as MODEL_PATH. MODEL_SEED seeds the
    default model's file only (a writable model folder); an extra model is never written."""
    path = settings.model_paths[name]
    if name == DEFAULT_MODEL:
        return settings
    return settings.model_copy(update={"model_path": path, "model_seed": ""})


def measure(engine: Engine) -> float:
    """Milliseconds for one 640 x 480 frame on `engine` (kept as `engine.live_ms`): one run
    to plan the shape (unless WARMUP_SIZES did), then the faster of two timed ones. A few
    hundred milliseconds at start-up, once per model."""
    h, w = LIVE_SIZE
    frame, weights = np.zeros((h, w, 3), np.uint8), engine.one_hot(0)
    if LIVE_SIZE_NAME not in engine.warmup_ms:
        engine.stylize(frame, weights)
    best = float("inf")
    for _ in range(_TIMED_RUNS):
        t0 = time.perf_counter()
        engine.stylize(frame, weights)
        best = min(best, (time.perf_counter() - t0) * 1000)
    engine.live_ms = best
    return best


def timed_at_start(settings: Settings) -> bool:
    """Whether models are timed as they load: where LIVE_MODEL may have a choice to make."""
    return len(settings.model_paths) > 1


def extra_model_error(name: str, e: ModelLoadError) -> ModelLoadError:
    """`e` (its own kind) naming the EXTRA_MODELS item whose file failed: one clear line."""
    return type(e)(f"extra model {name!r} (STYLEBOX_EXTRA_MODELS): {e}")


def load_model(settings: Settings, name: str) -> Engine:
    """Model `name` loaded (chosen, checked, warm) and timed (`timed_at_start`);
    ModelLoadError names the extra model whose file failed, so a bad EXTRA_MODELS item is
    one clear line."""
    try:
        engine = load_engine(settings_for(settings, name))
    except ModelLoadError as e:
        if name == DEFAULT_MODEL:
            raise
        raise extra_model_error(name, e) from None
    if timed_at_start(settings):
        log.info("model %s: %.1f ms at %s", name, measure(engine), LIVE_SIZE_NAME)
    return engine


def choose_live(live_model: str, timings: Mapping[str, float | None]) -> str:
    """The model a live session uses when it names none. A name is itself; `auto` is the
    default model when it holds LIVE_FPS at 640 x 480 (its time at most 1000/LIVE_FPS ms),
    else the fastest model timed (the default while nothing is timed yet)."""
    if live_model != "auto":
        return live_model
    default_ms = timings.get(DEFAULT_MODEL)
    if default_ms is not None and default_ms <= 1000 / LIVE_FPS:
        return DEFAULT_MODEL
    timed = {name: ms for name, ms in timings.items() if ms is not None}
    if not timed:
        return DEFAULT_MODEL
    # min() keeps the first of equals: `default` first, then EXTRA_MODELS' order.
    return min(timed, key=lambda name: timed[name])
