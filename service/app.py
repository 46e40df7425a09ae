"""The FastAPI app factory: `create_app(settings) -> FastAPI`.

The app's state is one `ServiceState` (service/state.py), made here. Each served model
(MODEL_PATH's `default` and the EXTRA_MODELS, service/models.py) is loaded once, in the
lifespan (so a bad model stops start-up), and kept in its `engines`; `stylebox serve` loads
them up front instead to report a bad file in one line, and passes them in. Run without the CLI:
`uvicorn --factory stylebox.service.app:create_app`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from anyio import to_thread
from fastapi import FastAPI

from stylebox.service import __version__
from stylebox.service.engine import Engine, ModelLoadError
from stylebox.service.http import metrics
from stylebox.service.http.access import check_routes, docs_pages, open_paths
from stylebox.service.http.admission import Admission
from stylebox.service.http.middleware import install_middleware
from stylebox.service.http.openapi import install_openapi
from stylebox.service.http.problems import install_problem_handlers
from stylebox.service.imaging import set_pixel_limit
from stylebox.service.jobs import VideoJobs
from stylebox.service.models import LIVE_SIZE_NAME, load_model, measure, timed_at_start
from stylebox.service.modelwatch import watch_model
from stylebox.service.previews import PreviewCache
from stylebox.service.routers import (
    admin,
    health,
    jobs,
    live,
    model,
    optimize,
    page,
    styles,
    stylize,
    videos,
)
from stylebox.service.settings import DEFAULT_MODEL, Settings
from stylebox.service.state import ServiceState, state_of
from stylebox.service.trainer import TrainerJobs

log = logging.getLogger("stylebox.service")


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    state = state_of(app)
    settings = state.settings
    # Each served model `stylebox serve` did not load up front is loaded here (a bad file
    # stops start-up), and dropped again on the way out.
    loaded_here = [name for name in state.served if name not in state.engines]
    for name in loaded_here:
        try:
            state.set_engine(name, await to_thread.run_sync(load_model, settings, name))
        except ModelLoadError as e:
            log.error("cannot load the model: %s", e)
            raise  # the server refuses to start
    if timed_at_start(settings):
        for engine in list(state.engines.values()):  # loaded by the caller: timed here
            if engine.live_ms is None:
                await to_thread.run_sync(measure, engine)
        log.info("serving %d models (%s); live sessions use %s unless they name one",
                 len(state.engines), ", ".join(
                     f"{n} {e.live_ms:.0f} ms at {LIVE_SIZE_NAME}"
                     for n, e in state.engines.items()), state.live_model)
    state.bind()  # limiters and lock bound to this event loop
    check_routes(app)  # routes added after create_app declare their access too
    if settings.api_key is not None:  # say which routes the key does not guard
        open_ = open_paths(app, settings.metrics_public)
        log.info("API key required except on %s", ", ".join(sorted(open_)))
    try:
        # Video jobs: their workers, heartbeat and sweep run while the app serves; on the
        # way out a running job stops at its next frame (service/jobs.py).
        # The model watcher reloads a model file when a worker's style edit (or an
        # operator) replaces it, and sweeps the trainer jobs (service/modelwatch.py).
        async with state.videos.running(state), watch_model(state):
            yield
    finally:
        state.draining = True
        for name in loaded_here:
            state.set_engine(name, None)  # /readyz turns 503 while shutting down


def create_app(settings: Settings | None = None, *, engine: Engine | None = None,
               engines: Mapping[str, Engine] | None = None) -> FastAPI:
    """The app for `settings`; `engine` (the default model) and `engines` (by name) are models
    loaded up front, the lifespan loads the rest."""
    settings = settings or Settings()
    loaded = dict(engines or {})
    if engine is not None:
        loaded[DEFAULT_MODEL] = engine
    set_pixel_limit(settings.max_pixels)
    app = FastAPI(
        title="stylebox",
        version=__version__,
        summary="Multi-style neural style transfer: one model, many styles and their blends.",
        lifespan=_lifespan,
    )
    # The one piece of state, made here whole (service/state.py): routes and layers read it.
    admission = Admission(settings.max_concurrency, settings.max_queue,
                          max_live=settings.max_live_sessions)
    state = ServiceState(
        settings, loaded, admission,
        metrics.Metrics(admission, engine=lambda: state.engine),  # read at scrape time
        VideoJobs(settings), PreviewCache(), TrainerJobs(settings))
    app.state.stylebox = state
    install_problem_handlers(app)
    # Each router declares who may call it (its guard: the API key, or open) and each route
    # whether admission control bounds it (service/http/access.py, admission.py).
    for module in (stylize, videos, live, styles, optimize, jobs, model, health, page, admin,
                   metrics):
        app.include_router(module.router)
    check_routes(app)  # a route that declares no access is an error, not an open route
    # Security headers, access log + metrics, CORS (service/http/middleware.py).
    install_middleware(app, settings, state.metrics, docs_pages(app))
    # The statuses the guards, admission control and problem handlers add, in the schema
    # (problem+json bodies, 401, 503, 408).
    install_openapi(app, settings)
    return app
