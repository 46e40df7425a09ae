"""Each server serves the model files as they are: when the file at MODEL_PATH (or an
EXTRA_MODELS one) is replaced (a worker's style edit renames a new one into place, or an
operator does), every replica reloads that model within MODEL_WATCH_S, with no request to
each one. `reload` is the one way an engine is swapped (POST /admin/reload uses it too,
`?model=NAME` for another than the default): the new engine is loaded in a worker thread
while the old one serves, then one assignment swaps it in; requests in flight finish on the
engine they took. A file that does not load leaves the old engine serving (and is logged once).

The watcher also sweeps the trainer jobs (service/trainer.py) every minute, so expired ones
go even where no worker runs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator

import anyio
from anyio import to_thread

from stylebox.service.engine import Engine, ModelLoadError
from stylebox.service.models import load_model
from stylebox.service.settings import DEFAULT_MODEL
from stylebox.service.state import ServiceState

log = logging.getLogger("stylebox.service")
_SWEEP_S = 60.0

FileId = tuple[int, int, int, int] | None


def file_id(path: str) -> FileId:
    """What changes when a file is replaced or rewritten: device, inode, mtime, size."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size


async def reload(state: ServiceState, name: str = DEFAULT_MODEL
                 ) -> tuple[Engine | None, Engine, float]:
    """Load model `name`'s file again (timed, as at start-up) and swap it in: (old engine,
    new engine, milliseconds). ModelLoadError leaves the old one serving."""
    async with state.reload_lock:  # one reload at a time; requests are not held up
        old = state.engines.get(name)
        t0 = time.perf_counter()
        new = await to_thread.run_sync(load_model, state.settings, name)
        state.set_engine(name, new)  # the swap: one assignment, seen by every request after it
    return old, new, (time.perf_counter() - t0) * 1000


@contextlib.asynccontextmanager
async def watch_model(state: ServiceState) -> AsyncIterator[None]:
    """Watch the model file (and sweep the trainer jobs) while the block lasts."""
    every = state.settings.model_watch_s
    # The files as they are now, before the block starts: one replaced from here on is seen.
    seen = {name: await to_thread.run_sync(file_id, path)
            for name, path in state.settings.model_paths.items()}
    async with anyio.create_task_group() as tg:
        tg.start_soon(_watch, state, every, seen)
        try:
            yield
        finally:
            tg.cancel_scope.cancel()


async def _watch(state: ServiceState, every: float, seen: dict[str, FileId]) -> None:
    paths = state.settings.model_paths  # name -> file
    last_sweep = 0.0
    while True:
        await anyio.sleep(every if every > 0 else _SWEEP_S)
        if time.monotonic() - last_sweep >= _SWEEP_S:
            last_sweep = time.monotonic()
            with contextlib.suppress(OSError):
                await to_thread.run_sync(state.trainer.sweep)
        if every <= 0:
            continue
        for name, path in paths.items():
            if state.engines.get(name) is not None:  # not while loading or shutting down
                seen[name] = await _follow(state, name, path, seen[name])


async def _follow(state: ServiceState, name: str, path: str, seen: FileId) -> FileId:
    """Reload model `name` if its file changed since `seen`; the file's id now."""
    now = await to_thread.run_sync(file_id, path)
    if now is None or now == seen:
        return seen
    # Tried once per version of the file, loaded or not.
    try:
        old, new, ms = await reload(state, name)
    except ModelLoadError as e:
        log.warning("%s was replaced but does not load (still serving the old model): %s",
                    path, e)
        return now
    log.info("%s was replaced: reloaded %s@%s -> %s@%s (%d styles) in %.0f ms", path,
             old.card.name if old else "-", old.card.version if old else "-",
             new.card.name, new.card.version, new.card.n_styles, ms)
    return now
