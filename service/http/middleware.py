"""Outermost ASGI layers: one log line + metrics per request, the last-resort 500, and
security headers.

Pure ASGI (not BaseHTTPMiddleware) so responses stream through untouched. Only the method,
route, status, time, byte counts and style spec are logged - never bodies, so never image
bytes. A rejection's reason is the slug of its problem type, read from the (small)
problem+json body on its way out, so every layer that answers with a problem is counted
without having to know about metrics.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stylebox.service.http.metrics import Metrics
from stylebox.service.http.problems import MEDIA_TYPE, TYPE_PREFIX, problem
from stylebox.service.settings import Settings

log = logging.getLogger("stylebox.access")
STYLE_HEADER = b"x-stylebox-style"
INFERENCE_HEADER = b"x-stylebox-inference-ms"
_PROBLEM_BODY_MAX = 16 * 1024  # problem bodies are a few hundred bytes; cap what we keep


def _style_from_query(scope: Scope) -> str:
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("style")
    return ascii(values[0][:80]) if values else "-"  # ascii(): no control chars in the log


def _reason(status: int, body: bytes) -> str:
    """`unknown-style`, `overloaded`, `not-found`, ...: the problem type's slug."""
    try:
        type_ = json.loads(body).get("type", "")
    except (ValueError, AttributeError):
        type_ = ""
    if isinstance(type_, str) and type_.startswith(TYPE_PREFIX):
        return type_[len(TYPE_PREFIX):][:40]
    try:
        from http import HTTPStatus

        return HTTPStatus(status).phrase.lower().replace(" ", "-")
    except ValueError:
        return str(status)


class ProblemMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics | None = None) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status, style, started = 0, "", False
        bytes_in = bytes_out = 0
        inference_ms: float | None = None
        is_problem, problem_body = False, bytearray()

        async def receive_wrapper() -> Message:
            nonlocal bytes_in
            message = await receive()
            bytes_in += len(message.get("body", b""))
            return message

        async def send_wrapper(message: Message) -> None:
            nonlocal status, style, started, bytes_out, inference_ms, is_problem
            if message["type"] == "http.response.start":
                started, status = True, message["status"]
                for key, value in message.get("headers", ()):
                    key = key.lower()
                    if key == STYLE_HEADER:
                        style = value.decode("latin-1")
                    elif key == INFERENCE_HEADER:
                        with contextlib.suppress(ValueError):
                            inference_ms = float(value)
                    elif key == b"content-type":
                        is_problem = value.split(b";")[0].strip() == MEDIA_TYPE.encode()
            elif message["type"] == "http.response.body":
                chunk = message.get("body", b"")
                bytes_out += len(chunk)
                if is_problem and len(problem_body) < _PROBLEM_BODY_MAX:
                    problem_body.extend(chunk[:_PROBLEM_BODY_MAX])
            await send(message)

        if self.metrics:
            self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive_wrapper, send_wrapper)
        except Exception:
            log.exception("unhandled error in %s %s", scope["method"], scope["path"])
            if started:  # too late for a problem body; let the server drop the connection
                raise
            status = 500
            await problem(500, "an unexpected error occurred; it has been logged",
                          instance=scope["path"])(scope, receive, send)
        finally:
            seconds = time.perf_counter() - t0
            template = getattr(scope.get("route"), "path", None)
            reason = (_reason(status, bytes(problem_body))
                      if 400 <= status < 500 or status == 503 else None)
            if self.metrics:
                self.metrics.in_flight.dec()
                self.metrics.observe(
                    method=scope["method"], route=template or "unmatched", status=status,
                    seconds=seconds, bytes_in=bytes_in, bytes_out=bytes_out, reason=reason,
                    inference_s=None if inference_ms is None else inference_ms / 1000)
            _log_access(scope, template, status, seconds, bytes_in, bytes_out,
                        style or _style_from_query(scope), reason)


def _log_access(scope: Scope, template: str | None, status: int, seconds: float,
                bytes_in: int, bytes_out: int, style: str, reason: str | None) -> None:
    # An unmatched path is attacker-chosen: escaped and cut short before it is logged.
    route = template or ascii(scope["path"][:100])
    fields: dict[str, Any] = {
        "method": scope["method"], "route": route, "status": status,
        "ms": round(seconds * 1000, 1), "bytes_in": bytes_in, "bytes_out": bytes_out,
        "style": style,
    }
    if reason:
        fields["reason"] = reason
    tail = f" reason={reason}" if reason else ""
    log.info("%s %s %d %.1fms in=%d out=%d style=%s%s", scope["method"], route, status,
             seconds * 1000, bytes_in, bytes_out, style, tail, extra={"access": fields})


class JsonFormatter(logging.Formatter):
    """One JSON object per line (`STYLEBOX_LOG_FORMAT=json`); access lines carry fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
            "level": record.levelname.lower(), "logger": record.name,
        }
        access = getattr(record, "access", None)
        if isinstance(access, dict):
            out.update(access)
        else:
            out["msg"] = record.getMessage()
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=True)


# Applied unless the route set its own (a page may send a CSP with its script hashes).
_COMMON = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
)
# Any HTML but the docs (the web page at /): this origin only; blob: is the result image,
# the stylized clip (fetched with the API key) and the downloads, data: small inline images;
# connect-src 'self' covers the same-origin WebSocket of the live camera (CSP level 3).
PAGE_CSP = (b"default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; "
            b"style-src 'self'; script-src 'self'; connect-src 'self'; object-src 'none'; "
            b"base-uri 'none'; frame-ancestors 'none'")
# Swagger UI and ReDoc (FastAPI's own pages, access.docs_pages) load from a CDN with an inline
# bootstrap.
DOCS_CSP = (b"default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
            b"style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net https://fonts.googleapis"
            b".com; font-src https://fonts.gstatic.com; img-src 'self' data: "
            b"https://fastapi.tiangolo.com https://cdn.redoc.ly; worker-src blob:; "
            b"object-src 'none'; frame-ancestors 'none'")


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, docs: frozenset[Callable[..., Any]]) -> None:
        self.app = app
        self.docs = docs  # the endpoints of Swagger UI and ReDoc (access.docs_pages)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                have = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in _COMMON if k not in have]
                html = any(k.lower() == b"content-type" and v.startswith(b"text/html")
                           for k, v in headers)
                if html and b"content-security-policy" not in have:
                    # Routing has put the endpoint that answers in the scope by now.
                    docs_ui = scope.get("endpoint") in self.docs
                    headers.append((b"content-security-policy",
                                    DOCS_CSP if docs_ui else PAGE_CSP))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_wrapper)


def install_middleware(app: FastAPI, settings: Settings, metrics: Metrics,
                       docs: frozenset[Callable[..., Any]]) -> None:
    """The whole stack, outermost first: security headers, access log + metrics + last-resort
    500, CORS (only with origins), the routes.

    The API key and admission control are not layers here but dependencies the routes
    declare (service/http/access.py, service/http/admission.py), run once routing has
    chosen the route; CORS sits outside them because preflights carry no credentials.
    `docs` are the endpoints of the API docs pages, whose HTML gets the docs CSP.
    """
    # add_middleware puts each new layer outside the previous ones: innermost first.
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type", "Accept"],
            expose_headers=["X-Stylebox-Style", "X-Stylebox-Inference-Ms",
                            "X-Stylebox-Inference-Size", "X-Stylebox-Tiles", "X-Stylebox-Model",
                            "X-Stylebox-Model-Name", "Retry-After"],
            max_age=600)
    app.add_middleware(ProblemMiddleware, metrics=metrics)
    app.add_middleware(SecurityHeadersMiddleware, docs=docs)
