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
from fastapi import Depends, FastAPI

from stylebox.service import __version__
from stylebox.service.backends import load_engine
from stylebox.service.deps import no_unknown_query
from stylebox.service.engine import Engine, ModelLoadError
from stylebox.service.http import metrics
from stylebox.service.http.access import RouteRules, mark_docs
from stylebox.service.http.middleware import install_middleware
from stylebox.service.http.openapi import install_openapi
from stylebox.service.http.problems import install_problem_handlers
from stylebox.service.imaging import set_pixel_limit
from stylebox.service.jobs import VideoJobs
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
    if settings.api_key is not None:  # say which routes the key does not guard
        open_ = app.state.route_rules.open_paths(settings.metrics_public)
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
        # Every route, WebSocket included: a query parameter it does not declare is a 422.
        dependencies=[Depends(no_unknown_query)],
    )
    mark_docs(app)  # /openapi.json, /docs, /redoc: FastAPI's own routes, open pages
    app.state.settings = settings
    app.state.engine = engine
    app.state.draining = False  # True once shutdown starts: /readyz answers 503 from then on
    _limiters(app, settings)
    app.state.videos = VideoJobs(settings)
    install_problem_handlers(app)
    for module in (stylize, videos, live, styles, model, health, page, admin):
        app.include_router(module.router)
    app.include_router(metrics.router)
    # Who may call each route and what admission control bounds, from the routes' own marks
    # (service/http/access.py); read when the app first serves, with every route in.
    rules = app.state.route_rules = RouteRules(app)
    # Security headers, access log + metrics, CORS, API key, admission (service/http/middleware.py).
    install_middleware(app, settings, rules)
    # The statuses those layers add, in the schema (problem+json bodies, 401, 503, 408).
    install_openapi(app, rules, settings)
    return app
