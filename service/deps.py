"""FastAPI dependencies: the loaded engine and the settings, from app.state. (Every route's
first dependency, its router's access guard with the API key and the unknown-query check,
is service/http/access.py's.)"""

from __future__ import annotations

from fastapi import Request

from stylebox.service.engine import Engine
from stylebox.service.http.errors import NotReadyError
from stylebox.service.settings import Settings

# For the `responses` of every route that depends on get_engine (service/http/openapi.py adds
# the problem+json body and the Retry-After header to every 503).
NOT_READY: dict[int | str, dict] = {503: {"description": "the model is not loaded yet"}}


def get_engine(request: Request) -> Engine:
    engine = getattr(request.app.state, "engine", None)
    if engine is None:
        raise NotReadyError("the model is not loaded yet",
                            request.app.state.settings.retry_after_s)
    return engine


def get_settings(request: Request) -> Settings:
    return request.app.state.settings
