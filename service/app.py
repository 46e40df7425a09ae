"""The FastAPI app factory: `create_app(settings) -> FastAPI`.

The ONNX session is loaded once, in the lifespan (so a bad model stops start-up), and kept
on `app.state.engine`; `stylebox serve` loads it up front instead to report a bad file in
one line, and passes it in. Run without the CLI:
`uvicorn --factory stylebox.service.app:create_app`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from anyio import CapacityLimiter, to_thread
from fastapi import FastAPI

from stylebox.service import __version__
from stylebox.service.backends import load_engine
from stylebox.service.engine import Engine, ModelLoadError
from stylebox.service.http import metrics
from stylebox.service.http.access import check_routes, docs_pages, open_paths
from stylebox.service.http.admission import Admission
from stylebox.service.http.middleware import install_middleware
from stylebox.service.http.openapi import install_openapi
from stylebox.service.http.problems import install_problem_handlers
from stylebox.service.imaging import set_pixel_limit
from stylebox.service.jobs import VideoJobs
from stylebox.service.previews import PreviewCache
from stylebox.service.routers import admin, health, live, model, page, styles, stylize, videos
from stylebox.service.settings import Settings

log = logging.getLogger("stylebox.service")


def _limiters(app: FastAPI, settings: Settings) -> None:
    app.state.limiter = CapacityLimiter(settings.max_concurrency)
    # Decode/encode may hold a full-size image each; bound them too, but less tightly.
    app.state.codec_limiter = CapacityLimiter(max(4, 2 * settings.max_concurrency))


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    loaded_here = app.state.engine is None
    if loaded_here:
        try:
            app.state.engine = await to_thread.run_sync(load_engine, settings)
        except ModelLoadError as e:
            log.error("cannot load the model: %s", e)
            raise  # the server refuses to start
    _limiters(app, settings)  # bound to this event loop
    check_routes(app)  # routes added after create_app declare their access too
    if settings.api_key is not None:  # say which routes the key does not guard
        open_ = open_paths(app, settings.metrics_public)
        log.info("API key required except on %s", ", ".join(sorted(open_)))
    try:
        # Video jobs: their workers, heartbeat and sweep run while the app serves; on the
        # way out a running job stops at its next frame (service/jobs.py).
        async with app.state.videos.running(app):
            yield
    finally:
        app.state.draining = True
        if loaded_here:
            app.state.engine = None  # /readyz turns 503 while shutting down


def create_app(settings: Settings | None = None, *, engine: Engine | None = None) -> FastAPI:
    settings = settings or Settings()
    set_pixel_limit(settings.max_pixels)
    app = FastAPI(
        title="stylebox",
        version=__version__,
        summary="Multi-style neural style transfer: one model, many styles and their blends.",
        lifespan=_lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.draining = False  # True once shutdown starts: /readyz answers 503 from then on
    _limiters(app, settings)
    app.state.videos = VideoJobs(settings)
    app.state.previews = PreviewCache()  # the style previews and the sample, per engine
    app.state.admission = admission = Admission(settings.max_concurrency, settings.max_queue,
                                                max_live=settings.max_live_sessions)
    app.state.metrics = metrics.Metrics(
        admission, engine=lambda: getattr(app.state, "engine", None))
    install_problem_handlers(app)
    # Each router declares who may call it (its guard: the API key, or open) and each route
    # whether admission control bounds it (service/http/access.py, admission.py).
    for module in (stylize, videos, live, styles, model, health, page, admin, metrics):
        app.include_router(module.router)
    check_routes(app)  # a route that declares no access is an error, not an open route
    # Security headers, access log + metrics, CORS (service/http/middleware.py).
    install_middleware(app, settings, app.state.metrics, docs_pages(app))
    # The statuses the guards, admission control and problem handlers add, in the schema
    # (problem+json bodies, 401, 503, 408).
    install_openapi(app, settings)
    return app
