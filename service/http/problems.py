"""RFC 9457 problem details (`application/problem+json`) for every error the API returns.

Handlers cover our own `StyleboxError`s (raised before a WebSocket is accepted, they refuse
its handshake with the problem: the API key's 401, the live-session cap's 503), FastAPI's
request validation (422), Starlette's HTTPException (404 for unknown routes, 405, ...: a
401 instead where the path needs the key and it was not sent), and - in
`ProblemMiddleware`, the outermost app layer - anything unexpected: logged with its
traceback server-side, answered with a bare 500 that carries no trace, paths or exception
text.
"""

from __future__ import annotations

import http
import json
import logging
from typing import Any, cast

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import HTTPConnection
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketState

from stylebox.service.http.access import allowed_methods, path_access
from stylebox.service.http.auth import check_key
from stylebox.service.http.errors import StyleboxError
from stylebox.service.state import state_of

log = logging.getLogger("stylebox.service")

MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:stylebox:problem:"


class ProblemResponse(JSONResponse):
    media_type = MEDIA_TYPE


def problem(status: int, detail: str, *, title: str | None = None, type_: str = "about:blank",
            instance: str | None = None, headers: dict[str, str] | None = None,
            **extensions: Any) -> ProblemResponse:
    body: dict[str, Any] = {
        "type": type_,
        # RFC 9457: with about:blank the title SHOULD be the status code's phrase.
        "title": title or _phrase(status),
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    body.update(jsonable_encoder(extensions))
    return ProblemResponse(body, status_code=status, headers=headers)


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"


async def _stylebox_error(conn: HTTPConnection, exc: Exception) -> ProblemResponse | None:
    assert isinstance(exc, StyleboxError)
    response = problem(exc.status, exc.detail, title=exc.title, type_=TYPE_PREFIX + exc.slug,
                       instance=conn.url.path, headers=exc.headers, **exc.extensions)
    if not isinstance(conn, WebSocket):
        return response
    # Raised by a WebSocket route's dependency (an unknown query parameter) or its endpoint.
    if conn.client_state is WebSocketState.CONNECTING:
        await refuse_handshake(response, conn.scope, conn.receive, conn.send)
    else:  # accepted: too late for an HTTP answer; 1008 = policy violation
        await conn.close(1008, exc.title)
    return None


async def _validation_error(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, RequestValidationError)
    # Keep loc/msg/type only: `input` may echo large or binary request content.
    errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
              for e in exc.errors()]
    detail = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors)
    return problem(422, detail or "invalid request", title="Invalid request",
                   type_=TYPE_PREFIX + "validation", instance=request.url.path, errors=errors)


async def _http_error(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code in (404, 405):  # routing refused it before any route's guard ran
        settings = state_of(request.app).settings
        if not path_access(request).is_open(settings.metrics_public):
            try:
                check_key(request, settings.api_key)  # no key: 401, not which paths exist
            except StyleboxError as e:
                return cast(ProblemResponse, await _stylebox_error(request, e))
    detail = exc.detail if isinstance(exc.detail, str) else _phrase(exc.status_code)
    if exc.status_code == 404 and detail == "Not Found":
        detail = f"no such resource: {request.url.path}"
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        detail = f"{request.method} is not allowed on {request.url.path}"
        methods = allowed_methods(request)
        if methods:  # every route's on the path, not only the first's
            headers["Allow"] = ", ".join(sorted(methods))
    return problem(exc.status_code, detail, instance=request.url.path, headers=headers)


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(StyleboxError, _stylebox_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)


# The ASGI extension that lets an app answer a WebSocket handshake with a full HTTP response.
DENIAL = "websocket.http.response"


async def refuse_handshake(response: ProblemResponse, scope: Scope, receive: Receive,
                           send: Send) -> None:
    """Refuse a WebSocket handshake before it is accepted, with `response` (a problem) as its
    HTTP answer: 401, 503 + Retry-After, ... reach clients that read the handshake's status.
    A server without the denial extension answers a close before accept with a bare 403.
    Counted in `stylebox_rejections_total{reason}` as HTTP rejections are (the access-log
    layer sees HTTP only)."""
    type_ = json.loads(response.body).get("type", "")
    state_of(scope["app"]).metrics.rejections.labels(type_.removeprefix(TYPE_PREFIX)[:40]).inc()
    if DENIAL in (scope.get("extensions") or {}):
        await response(scope, receive, send)  # Starlette sends it as websocket.http.response.*
    else:
        await send({"type": "websocket.close", "code": 1008, "reason": ""})


def problem_body(exc: StyleboxError) -> dict[str, Any]:
    """The problem+json object of `exc`, for channels that are not an HTTP response (the
    JSON error messages of a WebSocket session)."""
    return {"type": TYPE_PREFIX + exc.slug, "title": exc.title, "status": exc.status,
            "detail": exc.detail, **jsonable_encoder(exc.extensions)}
