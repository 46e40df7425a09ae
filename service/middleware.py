"""Outermost ASGI layer: one log line per request, and the last-resort 500.

Pure ASGI (not BaseHTTPMiddleware) so responses stream through untouched. Only the method,
route, status, time and style spec are logged - never bodies, so never image bytes.
"""

from __future__ import annotations

import logging
import time
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.problems import problem

log = logging.getLogger("stylebox.access")
STYLE_HEADER = b"x-stylebox-style"


def _style_from_query(scope: Scope) -> str:
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("style")
    return ascii(values[0][:80]) if values else "-"  # ascii(): no control chars in the log


class ProblemMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status, style, started = 0, "", False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, style, started
            if message["type"] == "http.response.start":
                started, status = True, message["status"]
                for key, value in message.get("headers", ()):
                    if key.lower() == STYLE_HEADER:
                        style = value.decode("latin-1")
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            log.exception("unhandled error in %s %s", scope["method"], scope["path"])
            if started:  # too late for a problem body; let the server drop the connection
                raise
            status = 500
            await problem(500, "an unexpected error occurred; it has been logged",
                          instance=scope["path"])(scope, receive, send)
        finally:
            route = getattr(scope.get("route"), "path", None) or scope["path"]
            log.info("%s %s %d %.1fms style=%s", scope["method"], route, status,
                     (time.perf_counter() - t0) * 1000, style or _style_from_query(scope))
