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

WebSocket routes (`WS /live`) are bounded by sessions instead: a live session lasts minutes,
so it cannot hold one of the request slots above (a few cameras would starve `/stylize`),
and a request deadline means nothing for it. At most `max_live` sessions
are open; the next handshake is refused with the same 503 problem + `Retry-After`, before it
is accepted (service/http/problems.py, `refuse_handshake`). Each live frame then waits for the
same inference limiter as `/stylize`, so cameras and uploads share the model fairly.

Both are dependencies a route declares, after its router's access dependency (so a request
without the API key never takes a slot): `dependencies=[ADMITTED]` for an HTTP route that
runs the network on an upload (`POST /stylize`), `dependencies=[LIVE_SESSION]` for a
WebSocket route (`WS /live`). A route without one is not bounded here; the OpenAPI document
lists the 503 and 408 of the routes with `ADMITTED` (service/http/openapi.py).

An admitted request holds its slot until its response is sent (the slot's dependency has the
request's scope); the deadline covers the route's other dependencies and its function (the
deadline's dependency has the function's scope), so it never cuts a response off half-way.
Whether the body had arrived is what the upload reader says (service/upload.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

import anyio
from fastapi import Depends, Request
from starlette.requests import ClientDisconnect

from stylebox.service.http.errors import DeadlineError, OverloadedError, UploadTimeoutError
from stylebox.service.state import StateDep
from stylebox.service.upload import upload_received

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


async def _drain(request: Request) -> None:
    """Read and drop the request body, bounded in bytes and time."""
    size = 0
    with anyio.move_on_after(_DRAIN_SECONDS):
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > _DRAIN_BYTES:
                    return
        except ClientDisconnect:
            return


async def _slot(request: Request, state: StateDep) -> AsyncIterator[Admission]:
    """One of the `limit` request slots, held until the response is sent; 503 when all are
    taken (the body drained first, so a client still uploading sees the answer)."""
    adm = state.admission
    if not adm.try_acquire():
        await _drain(request)
        retry = state.settings.retry_after_s
        raise OverloadedError(
            f"the server is at capacity ({adm.max_concurrency} running, {adm.max_queue} "
            f"queued); retry after {retry} s", retry,
            max_concurrency=adm.max_concurrency, max_queue=adm.max_queue)
    try:
        yield adm
    finally:
        adm.release()


async def admitted(request: Request, state: StateDep,
                   _: Annotated[Admission, Depends(_slot)]) -> AsyncIterator[None]:
    """A request slot, then the deadline around the rest of the request's work: past it,
    408 if the body had not arrived, else 503 (the inference running then finishes first:
    the deadline takes effect at the next await)."""
    settings = state.settings
    timeout = settings.request_timeout_s
    with anyio.CancelScope(deadline=anyio.current_time() + timeout) as deadline:
        yield
    if not deadline.cancelled_caught:
        return
    limit = f"{timeout:g} s"
    if not upload_received(request):
        raise UploadTimeoutError(
            f"the request body did not arrive within the {limit} request timeout",
            request_timeout_s=timeout)
    retry = settings.retry_after_s
    raise DeadlineError(
        f"the request was not finished within the {limit} request timeout; the server is "
        f"busy, retry after {retry} s", retry, request_timeout_s=timeout)


async def live_session(state: StateDep) -> AsyncIterator[None]:
    """One of the `max_live` session places, held while the session lasts; a handshake
    when all are taken is refused with 503 (service/http/problems.py refuses it)."""
    adm = state.admission
    if not adm.try_acquire_live():
        retry = state.settings.retry_after_s
        raise OverloadedError(
            f"the server has {adm.max_live} live sessions open, its limit; retry after "
            f"{retry} s" if adm.max_live else
            "live sessions are turned off on this server (max_live_sessions=0)", retry,
            max_live_sessions=adm.max_live)
    try:
        yield
    finally:
        adm.release_live()


# What a route declares. The deadline has the function's scope: it ends when the route
# function returns, before the response is sent; the slot it depends on, the request's.
ADMITTED = Depends(admitted, scope="function")
LIVE_SESSION = Depends(live_session)
