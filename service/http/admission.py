"""Admission control for the expensive routes: bounded work, bounded queue, a deadline.

The router already runs at most `max_concurrency` inferences at once (a CapacityLimiter),
but any number of requests could *wait* for it, each holding its upload (up to
`max_upload_bytes`) and then its decoded image: memory would grow with the load, and latency
without bound. This layer caps the requests in progress on the guarded routes at
`max_concurrency + max_queue`. One more gets an immediate 503 with `Retry-After`, decided
before its body is read, so overload costs almost nothing and memory stays bounded.

Every admitted request also has a deadline (`request_timeout_s`) covering its upload, its
wait for an inference slot, decoding and encoding. Past it, the request is answered 408 if
its body had not fully arrived (a slow or stalled client) and 503 otherwise. A running
inference is not interrupted (ONNX Runtime cannot be cancelled from Python); the deadline
takes effect at the next await after it, and the slot is released either way.

WebSocket routes marked the same way (`WS /live`) are bounded by sessions instead: a live
session lasts minutes, so it cannot hold one of the request slots above (a few cameras would
starve `/stylize`), and a request deadline means nothing for it. At most `max_live` sessions
are open; the next handshake is refused with the same 503 problem + `Retry-After`, before it
is accepted (service/http/problems.py, `refuse_handshake`). Each live frame then waits for the
same inference limiter as `/stylize`, so cameras and uploads share the model fairly.

It is a pure ASGI layer (no router changes). The guarded routes are those marked
`@mark(admission=True)` where they are declared (service/http/access.py); the layer asks the
app's `RouteRules` whether a request is for one of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stylebox.service.http.access import RouteRules
from stylebox.service.http.problems import TYPE_PREFIX, problem, refuse_handshake

# A rejected request's body is read and dropped (so the client, still uploading, sees the
# 503 rather than a reset connection), but only this much and for this long.
_DRAIN_BYTES = 64 * 1024 * 1024
_DRAIN_SECONDS = 2.0


@dataclass
class Admission:
    """Requests in progress on the guarded routes. Used from the event loop only: no lock."""

    max_concurrency: int
    max_queue: int
    active: int = 0
    max_live: int = 0  # live WebSocket sessions open at once
    live: int = 0

    @property
    def limit(self) -> int:
        return self.max_concurrency + self.max_queue

    @property
    def queued(self) -> int:  # an upper bound: admitted ones still uploading count as queued
        return max(0, self.active - self.max_concurrency)

    def try_acquire(self) -> bool:
        if self.active >= self.limit:
            return False
        self.active += 1
        return True

    def release(self) -> None:
        self.active -= 1

    def try_acquire_live(self) -> bool:
        if self.live >= self.max_live:
            return False
        self.live += 1
        return True

    def release_live(self) -> None:
        self.live -= 1


async def _drain(receive: Receive) -> None:
    """Read and drop the request body, bounded in bytes and time."""
    size = 0
    with anyio.move_on_after(_DRAIN_SECONDS):
        while size <= _DRAIN_BYTES:
            message = await receive()
            if message["type"] != "http.request":
                return  # http.disconnect
            size += len(message.get("body", b""))
            if not message.get("more_body", False):
                return


class AdmissionMiddleware:
    def __init__(self, app: ASGIApp, admission: Admission, timeout_s: float,
                 retry_after_s: int, rules: RouteRules) -> None:
        self.app = app
        self.admission = admission
        self.rules = rules
        self.timeout_s = timeout_s
        self.retry_after = str(retry_after_s)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and self.rules.admitted(scope):
            await self._session(scope, receive, send)
            return
        if scope["type"] != "http" or not self.rules.admitted(scope):
            await self.app(scope, receive, send)
            return
        adm = self.admission
        if not adm.try_acquire():
            await _drain(receive)
            await problem(
                503, f"the server is at capacity ({adm.max_concurrency} running, "
                f"{adm.max_queue} queued); retry after {self.retry_after} s",
                title="Service overloaded", type_=TYPE_PREFIX + "overloaded",
                instance=scope["path"], headers={"Retry-After": self.retry_after},
                max_concurrency=adm.max_concurrency, max_queue=adm.max_queue,
            )(scope, receive, send)
            return
        body_done = started = False

        async def receive_wrapper() -> Message:
            nonlocal body_done
            message = await receive()
            if message["type"] == "http.request" and not message.get("more_body", False):
                body_done = True
            return message

        async def send_wrapper(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                deadline.deadline = math.inf  # never cut a response off half-way
            await send(message)

        try:
            with anyio.CancelScope(deadline=anyio.current_time() + self.timeout_s) as deadline:
                await self.app(scope, receive_wrapper, send_wrapper)
        finally:
            adm.release()
        if deadline.cancelled_caught and not started:
            await self._timed_out(scope, receive, send, body_done)

    async def _session(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A WebSocket session: counted while it lasts, refused with 503 when all are taken."""
        adm = self.admission
        if not adm.try_acquire_live():
            detail = (f"the server has {adm.max_live} live sessions open, its limit; retry "
                      f"after {self.retry_after} s" if adm.max_live else
                      "live sessions are turned off on this server (max_live_sessions=0)")
            await refuse_handshake(problem(
                503, detail, title="Service overloaded", type_=TYPE_PREFIX + "overloaded",
                instance=scope["path"], headers={"Retry-After": self.retry_after},
                max_live_sessions=adm.max_live), scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            adm.release_live()

    async def _timed_out(self, scope: Scope, receive: Receive, send: Send,
                         body_done: bool) -> None:
        limit = f"{self.timeout_s:g} s"
        if not body_done:
            response = problem(
                408, f"the request body did not arrive within the {limit} request timeout",
                title="Request timeout", type_=TYPE_PREFIX + "request-timeout",
                instance=scope["path"], headers={"Connection": "close"},
                request_timeout_s=self.timeout_s)
        else:
            response = problem(
                503, f"the request was not finished within the {limit} request timeout; "
                f"the server is busy, retry after {self.retry_after} s",
                title="Request timeout", type_=TYPE_PREFIX + "timeout",
                instance=scope["path"], headers={"Retry-After": self.retry_after},
                request_timeout_s=self.timeout_s)
        await response(scope, receive, send)
