"""FastAPI dependencies: the loaded engine and the settings, from app.state; and the one
every route has (create_app): no query parameter the route does not declare."""

from __future__ import annotations

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, APIWebSocketRoute
from pydantic import BaseModel
from starlette.requests import HTTPConnection

from stylebox.service.engine import Engine
from stylebox.service.http.access import Access, mark_of
from stylebox.service.http.errors import NotReadyError, UnknownQueryParameterError
from stylebox.service.settings import Settings

# For the `responses` of every route that depends on get_engine (service/http/openapi.py adds the
# problem+json body and the Retry-After header to every 503).
NOT_READY: dict[int | str, dict] = {503: {"description": "the model is not loaded yet"}}


def get_engine(request: Request) -> Engine:
    engine = getattr(request.app.state, "engine", None)
    if engine is None:
        raise NotReadyError("the model is not loaded yet",
                            request.app.state.settings.retry_after_s)
    return engine


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def declared_query(dependant: Dependant) -> set[str]:
    """The query parameters a route declares, as a URL names them (aliases), its
    dependencies' included; a Pydantic model parameter declares each of its fields."""
    names: set[str] = set()
    for field in dependant.query_params:
        model = field.field_info.annotation
        if isinstance(model, type) and issubclass(model, BaseModel):
            names |= {f.alias or name for name, f in model.model_fields.items()}
        else:
            names.add(field.alias)
    for sub in dependant.dependencies:
        names |= declared_query(sub)
    return names


def no_unknown_query(connection: HTTPConnection) -> None:
    """Refuse (422) a query parameter the matched route does not declare, on every route,
    WebSocket ones included (FastAPI knows them from the route's dependant). Pages
    (`Access.PAGE`) are left alone: browsers open them from links that may carry parameters
    for others (campaign tags, cache busters), and they take none whose default could hide."""
    route = connection.scope.get("route")
    if not connection.query_params or not isinstance(route, APIRoute | APIWebSocketRoute):
        return
    if mark_of(route.endpoint).access is Access.PAGE:
        return
    accepted = declared_query(route.dependant)
    unknown = sorted(set(connection.query_params) - accepted)
    if unknown:
        method = connection.scope.get("method", "WebSocket")
        raise UnknownQueryParameterError(unknown, sorted(accepted),
                                         f"{method} {connection.url.path}")
