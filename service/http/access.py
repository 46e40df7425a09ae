"""Who may call each route, and which routes admission control bounds: one mark per route,
put where the route is declared, and `RouteRules`, derived from `app.routes`, for the layers.

A route's endpoint carries its mark (`@mark(Access.PROBE)` right above the `def`, under the
route decorator). The mark is read back through the app's routes, so it goes wherever the
endpoint goes: a router included under a prefix, a mounted sub-app. A route without a mark
gets `Mark()`: it needs the API key and admission control leaves it alone; nothing treats it
as public. FastAPI's own routes (the schema, Swagger UI, ReDoc) are marked by `mark_docs`.

`RouteRules` is what the API key (auth.py), admission control (admission.py), the docs CSP
(middleware.py) and the OpenAPI document (openapi.py), all in this package, consult.
A request is matched as the router matches it: each route's own compiled `path_regex` and
methods, in route order, the first route that takes the method, else the first that has the
path (it answers 405). A WebSocket handshake (scope type `websocket`) is matched against the
WebSocket routes only, as the router does: it has no method, and no HTTP route takes it.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, TypeVar

from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from starlette._utils import get_route_path  # the path the router matches (root_path off)
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.types import Scope


class Access(enum.Enum):
    """Who may call a route when `STYLEBOX_API_KEY` is set."""

    KEYED = "keyed"  # the default: the key
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
class Mark:
    access: Access = Access.KEYED
    # Runs the network on a client's upload: capped in number and given a deadline (HTTP), or
    # capped in live sessions (WebSocket; service/http/admission.py).
    admission: bool = False
    # Swagger UI or ReDoc: HTML that loads its scripts from their CDN (the docs CSP).
    docs_ui: bool = False


DEFAULT = Mark()
# The pseudo-method a WebSocket route "takes": handshakes carry none, and no HTTP method can
# equal it, so an HTTP request never matches a WebSocket route and vice versa.
WEBSOCKET = "WEBSOCKET"
_ATTR = "__stylebox_mark__"
E = TypeVar("E", bound=Callable[..., Any])


def mark(access: Access = Access.KEYED, *, admission: bool = False,
         docs_ui: bool = False) -> Callable[[E], E]:
    """Mark an endpoint (returned unchanged). A second, different mark is an error: a route
    would silently change who may call it."""
    new = Mark(access, admission, docs_ui)

    def apply(endpoint: E) -> E:
        old = getattr(endpoint, _ATTR, new)
        if old != new:
            raise ValueError(f"{endpoint.__qualname__} is already marked {old}")
        setattr(endpoint, _ATTR, new)
        return endpoint

    return apply


def mark_of(endpoint: Callable[..., Any] | None) -> Mark:
    return getattr(endpoint, _ATTR, DEFAULT)


def mark_docs(app: FastAPI) -> None:
    """Mark the routes FastAPI() adds itself: the schema a page, Swagger UI and ReDoc pages
    with the docs CSP. Their endpoints are closures made per app, so marking them is local."""
    ui = {app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url}
    for route in app.routes:
        if isinstance(route, Route) and route.path in ui | {app.openapi_url}:
            mark(Access.PAGE, docs_ui=route.path in ui)(route.endpoint)


@dataclass(frozen=True)
class _Rule:
    regex: re.Pattern[str]
    methods: frozenset[str]
    path: str  # the template, as the OpenAPI document names it
    mark: Mark
    inner: RouteRules | None = None  # a Mount: the routes below it decide


def _method(scope: Scope) -> str:
    return WEBSOCKET if scope["type"] == "websocket" else scope.get("method", "")


class RouteRules:
    """The marks of an app's routes, matched against requests as the router matches them.

    Derived from `routes` on first use (the first request, when Starlette also builds the
    middleware stack), so every route included by then counts; a route added later gets
    `DEFAULT`. HTTP endpoints, WebSocket endpoints and mounts are read: a request that another
    kind of route (a host) would take gets `DEFAULT` too.
    """

    def __init__(self, app: Any) -> None:
        self._app = app  # anything with `.routes`: an app, a router, a Mount
        self._redirect = getattr(getattr(app, "router", app), "redirect_slashes", False)

    @cached_property
    def _rules(self) -> tuple[_Rule, ...]:
        rules: list[_Rule] = []
        for route in iter_route_contexts(self._app.routes):  # included routers, prefixed
            if isinstance(route.original_route, Mount):
                rules.append(_Rule(route.path_regex, frozenset(), route.path, DEFAULT,
                                   RouteRules(route)))
            elif isinstance(route.original_route, WebSocketRoute):
                rules.append(_Rule(route.path_regex, frozenset({WEBSOCKET}),
                                   route.path_format, mark_of(route.endpoint)))
            elif route.methods:  # an HTTP endpoint
                rules.append(_Rule(route.path_regex, frozenset(route.methods),
                                   route.path_format, mark_of(route.endpoint)))
        return tuple(rules)

    @cached_property
    def _operations(self) -> dict[tuple[str, str], Mark]:
        ops: dict[tuple[str, str], Mark] = {}
        for rule in self._rules:
            for method in rule.methods - {WEBSOCKET}:  # OpenAPI has no WebSocket operations
                ops.setdefault((rule.path, method), rule.mark)  # the router takes the first
        return ops

    def _find(self, path: str, method: str) -> tuple[Mark | None, bool]:
        """The mark of the route that answers (None: no route has the path), and whether it
        takes the method (False: it answers 405)."""
        partial = None
        for rule in self._rules:
            if rule.inner is None and (WEBSOCKET in rule.methods) != (method == WEBSOCKET):
                continue  # the router never hands a handshake to an HTTP route, nor back
            found = rule.regex.match(path)
            if found is None:
                continue
            if rule.inner is not None:  # the mount takes the request, whatever is below it
                return rule.inner._find("/" + found["path"], method)
            if method in rule.methods:
                return rule.mark, True
            if partial is None:
                partial = rule.mark
        return partial, False

    def allowed(self, scope: Scope) -> frozenset[str]:
        """Every method some route takes on this request's path (a 405's Allow header: the
        router names only the first route's, and GET and DELETE /videos/{id} are two)."""
        path = get_route_path(scope)
        methods: set[str] = set()
        for rule in self._rules:
            found = rule.regex.match(path)
            if found is None:
                continue
            if rule.inner is not None:
                return rule.inner.allowed({**scope, "path": "/" + found["path"],
                                           "root_path": ""})
            methods |= rule.methods
        return frozenset(methods)

    def answering(self, scope: Scope) -> Mark:
        """The mark of the route that answers this request, a 405 included; else DEFAULT."""
        found, _ = self._find(get_route_path(scope), _method(scope))
        return found or DEFAULT

    def admitted(self, scope: Scope) -> bool:
        """Whether admission control bounds this request: its route takes the method and is
        marked `admission`. A path the router would redirect for a trailing slash counts as
        the route it redirects to, as before (the check ran ahead of routing)."""
        path, method = get_route_path(scope), _method(scope)
        found, takes = self._find(path, method)
        if found is None and self._redirect and path != "/":
            other = path.rstrip("/") if path.endswith("/") else path + "/"
            found, takes = self._find(other, method)
        return takes and found is not None and found.admission

    def operation(self, path: str, method: str) -> Mark:
        """The mark of the operation the OpenAPI document lists under `path`, `method`."""
        return self._operations.get((path, method.upper()), DEFAULT)

    def open_paths(self, metrics_public: bool) -> frozenset[str]:
        """The path templates open without the key (this app's own routes, not mounts'), for
        the start-up log; requests are matched with `answering`."""
        return frozenset(rule.path for rule in self._rules
                         if rule.inner is None and rule.mark.access.is_open(metrics_public))
