"""Who may call each route: one access dependency per router, declared where it is made.

    router = APIRouter(tags=["styles"], dependencies=[guard(Access.KEYED)])

`guard(access)` is FastAPI's own way to guard a router: a dependency that every route of the
router runs first, after routing has chosen the route, so nothing here matches paths: the
API key where the access needs one (service/http/auth.py), then no query parameter the
route does not declare (pages excepted). Route-level dependencies come after it: admission
control's (service/http/admission.py), then the route's own, so a request without the key is
refused before it takes a slot or its body is read.

Fail closed: an API route with no guard (or two) is refused when the app is made and when it
starts (`check_routes`), and so is any other kind of route but FastAPI's own docs (the
schema, Swagger UI, ReDoc: fixed pages, open). A path no route has needs the key: its 404 is
a 401 without it, and a 405 is answered as the path's first route says (`path_access`,
asked by service/http/problems.py).

What the OpenAPI document (service/http/openapi.py) and the start-up log say about a route is
read from its guard (`access_of`): the same declaration the requests meet.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, APIWebSocketRoute, RouteContext, iter_route_contexts
from pydantic import BaseModel
from starlette.requests import HTTPConnection
from starlette.routing import Match, Route

from stylebox.service.http.auth import check_key
from stylebox.service.http.errors import UnknownQueryParameterError
from stylebox.service.state import StateDep


class Access(enum.Enum):
    """Who may call a route when `STYLEBOX_API_KEY` is set."""

    KEYED = "keyed"  # the key
    # Orchestrators and load balancers probe without credentials.
    PROBE = "probe"
    # Fixed content that runs no model and holds no data (the page shell, its files, the API
    # docs): a browser cannot attach a header to a page load.
    PAGE = "page"
    # Scrapes are usually network-restricted rather than authenticated, and the series hold
    # counts, not data; `STYLEBOX_METRICS_PUBLIC=false` keys it.
    METRICS = "metrics"

    def is_open(self, metrics_public: bool) -> bool:
        """Whether a request needs no key."""
        return self in (Access.PROBE, Access.PAGE) or (self is Access.METRICS and metrics_public)


@dataclass(frozen=True)
class Guard:
    """A router's access dependency (`guard` makes it): the API key unless `access` is open,
    then the route's declared query parameters unless it is a page."""

    access: Access

    async def __call__(self, connection: HTTPConnection,
                       state: StateDep) -> None:
        settings = state.settings
        if not self.access.is_open(settings.metrics_public):
            check_key(connection, settings.api_key)
        if self.access is not Access.PAGE:
            no_unknown_query(connection)


def guard(access: Access) -> Any:
    """The dependency that declares a router's access: `APIRouter(dependencies=[guard(...)])`."""
    return Depends(Guard(access))


# -- the query parameters a route declares -----------------------------------------------------

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
    """Refuse (422) a query parameter the matched route does not declare, WebSocket routes
    included (FastAPI knows them from the route's dependant). Pages (`Access.PAGE`) are not
    asked: browsers open them from links that may carry parameters for others (campaign
    tags, cache busters), and they take none whose default could hide."""
    route = connection.scope.get("route")
    if not connection.query_params or not isinstance(route, APIRoute | APIWebSocketRoute):
        return
    accepted = declared_query(route.dependant)
    unknown = sorted(set(connection.query_params) - accepted)
    if unknown:
        method = connection.scope.get("method", "WebSocket")
        raise UnknownQueryParameterError(unknown, sorted(accepted),
                                         f"{method} {connection.url.path}")


# -- reading the declarations back ---------------------------------------------------------------

def dependency_calls(dependant: Dependant | None) -> Iterator[Callable[..., Any]]:
    """Every callable a route depends on, its dependencies' dependencies included."""
    for sub in dependant.dependencies if dependant is not None else ():
        if sub.call is not None:
            yield sub.call
        yield from dependency_calls(sub)


def _guards(route: RouteContext) -> list[Guard]:
    dependant = getattr(route, "dependant", None)
    return [call for call in dependency_calls(dependant) if isinstance(call, Guard)]


def _docs_paths(app: FastAPI) -> set[str | None]:
    return {app.openapi_url, app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url}


def _is_docs(app: FastAPI, route: RouteContext) -> bool:
    """One of the routes FastAPI() adds itself (the schema, Swagger UI, ReDoc)."""
    return isinstance(route.original_route, Route) and not isinstance(
        route.original_route, APIRoute) and route.path in _docs_paths(app)


def docs_pages(app: FastAPI) -> frozenset[Callable[..., Any]]:
    """The endpoints of Swagger UI and ReDoc: HTML that loads its scripts from their CDN (the
    docs CSP, service/http/middleware.py)."""
    ui = _docs_paths(app) - {app.openapi_url}
    return frozenset(r.endpoint for r in iter_route_contexts(app.routes)
                     if _is_docs(app, r) and r.path in ui)


def access_of(app: FastAPI, route: RouteContext) -> Access:
    """A route's declared access: its guard's; FastAPI's docs are pages; anything else (no
    guard: `check_routes` refuses it) needs the key."""
    guards = _guards(route)
    if len(guards) == 1:
        return guards[0].access
    return Access.PAGE if _is_docs(app, route) else Access.KEYED


def check_routes(app: FastAPI) -> None:
    """RuntimeError naming every route that does not declare its access: an API route
    without exactly one guard, or a route of another kind (a mount, a plain Starlette route)
    but FastAPI's docs, which cannot carry one."""
    wrong = []
    for route in iter_route_contexts(app.routes):
        original = route.original_route
        where = f"{', '.join(sorted(route.methods or ())) or 'WebSocket'} {route.path}"
        if isinstance(original, APIRoute | APIWebSocketRoute):
            if len(_guards(route)) != 1:
                wrong.append(f"{where}: {len(_guards(route))} access guards, not one")
        elif not _is_docs(app, route):
            wrong.append(f"{where}: a {type(original).__name__}, which takes no guard")
    if wrong:
        raise RuntimeError("every route declares its access with one guard "
                           "(service/http/access.py): " + "; ".join(wrong))


def open_paths(app: FastAPI, metrics_public: bool) -> frozenset[str]:
    """The path templates open without the key, for the start-up log."""
    return frozenset(r.path for r in iter_route_contexts(app.routes)
                     if r.path and access_of(app, r).is_open(metrics_public))


def _on_path(app: FastAPI, connection: HTTPConnection) -> list[RouteContext]:
    """The app's routes that have this request's path, in the router's order, each asked
    with its own `matches` (a copy of the scope: matching may write to it)."""
    scope = connection.scope
    probe = {"type": scope["type"], "path": scope["path"],
             "root_path": scope.get("root_path", ""), "method": scope.get("method", "")}
    return [r for r in iter_route_contexts(connection.app.routes)
            if r.matches(dict(probe))[0] is not Match.NONE]


def allowed_methods(connection: HTTPConnection) -> frozenset[str]:
    """Every method some route takes on this request's path (a 405's Allow header: the
    router names only the first route's, and GET and DELETE /videos/{id} are two)."""
    return frozenset(m for r in _on_path(connection.app, connection) for m in r.methods or ())


def path_access(connection: HTTPConnection) -> Access:
    """The access of a request routing refused: KEYED for a path no route has (a 404), the
    first route's on the path for a method it does not take (the router's 405)."""
    routes = _on_path(connection.app, connection)
    return access_of(connection.app, routes[0]) if routes else Access.KEYED
