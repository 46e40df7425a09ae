"""`WS /live`: a camera's frames in, stylized frames out, one WebSocket per camera.

The protocol (docs/live.md has it in full, with examples):

    server -> client, once, on accept: {"type": "hello", "protocol": "stylebox.v1",
                                        "model_name": "default", "models": [...],
                                        "styles": [...], "limits": {...}}
    client -> server, text, any time:  {"style": "candy:0.7,mosaic:0.3", "strength": 0.8,
                                        "preserve_color": false, "quality": 80}
                                       (every field optional; absent ones keep their value)
    server -> client, text:            {"type": "control", ...the settings now in force}
    client -> server, binary:          one frame, JPEG or PNG
    server -> client, per frame done:  {"type": "frame", "seq", "width", "height",
                                        "server_ms", "inference_ms", "received", "dropped",
                                        "style"}, then the binary JPEG of the stylized frame
    server -> client, text:            {"type": "error", "problem": {problem+json}, "seq"}

At most one frame per session is in flight. A reader task keeps reading while a frame is
stylized; a frame that arrives meanwhile is dropped and counted, never queued, so a camera
faster than the server gets the newest frames with the server's latency, not a growing
backlog. The client learns how many were dropped from every reply.

A frame takes the path an uploaded image takes (service/pipeline.py: decode, price,
stylize, controls, encode), stylized by a `StreamStylizer` (service/stability.py), one per
session, which carries the conditional-instance-norm statistics from frame to frame (less
flicker) and starts afresh on a new style, frame size or scene cut. Every step runs in a
worker thread under the app's limiters: inference shares `max_concurrency` with
`POST /stylize`, and the event loop never waits on the network.

`WS /live?model=NAME` picks one of several served models (service/models.py); without it the
session uses LIVE_MODEL's. The API key and the live-session cap are checked before the
handshake completes (the
router's guard and the route's `LIVE_SESSION`: service/http/access.py, admission.py), then
the page's Origin (`origin_allowed`); a refused handshake is an HTTP 401, 503 or 403 problem.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Annotated, Any
from urllib.parse import urlsplit

import anyio
from anyio.abc import TaskGroup
from fastapi import APIRouter, Depends, Query, WebSocket
from starlette.websockets import WebSocketDisconnect

from stylebox.service.controls import QUALITY, STRENGTH, Bound, Controls
from stylebox.service.deps import known_model
from stylebox.service.engine import Engine
from stylebox.service.http.access import Access, guard
from stylebox.service.http.admission import LIVE_SESSION
from stylebox.service.http.errors import (
    LiveMessageError,
    PayloadTooLargeError,
    StyleboxError,
    UnsupportedImageError,
)
from stylebox.service.http.problems import TYPE_PREFIX, problem, problem_body, refuse_handshake
from stylebox.service.pipeline import arun_steps, image_path
from stylebox.service.sniff import FRAMES, sniff
from stylebox.service.stability import StreamStylizer
from stylebox.service.state import ServiceState, StateDep
from stylebox.service.styles import StyleMix, parse_style_spec
from stylebox.service.tiling import TileConfig

router = APIRouter(tags=["live"], dependencies=[guard(Access.KEYED)])
log = logging.getLogger("stylebox.service")

PROTOCOL = "stylebox.v1"
IDLE_CLOSE = 4408  # an application close code (4000-4999): the session sent nothing too long
MAX_CONTROL_CHARS = 16 * 1024  # a control message is a few dozen bytes; 400 styles fit
DEFAULT_QUALITY = 80  # JPEG quality of the stylized frames: small and fast to encode


class LiveSession:
    """One accepted WebSocket: the settings in force, the counters and the stream's state."""

    def __init__(self, ws: WebSocket, state: ServiceState, name: str, engine: Engine) -> None:
        self.ws = ws
        self.state = state  # the limiters, the engine a reload swaps in, the metrics
        self.settings = state.settings
        self.name = name  # the served model the session uses, for its whole life
        self.engine = engine
        self.stylizer = self._stylizer(engine)
        self.mix: StyleMix | None = None
        self.controls = Controls()
        self.quality = DEFAULT_QUALITY
        self.received = self.stylized = self.dropped = self.errors = 0
        self.busy = False  # a frame is in flight: the next ones are dropped
        self.send_lock = anyio.Lock()  # a frame's JSON and its JPEG go out back to back
        self.metrics = state.metrics

    def _stylizer(self, engine: Engine) -> StreamStylizer:
        return StreamStylizer(engine, max_inference_pixels=self.settings.max_inference_pixels,
                              tiling=TileConfig.from_settings(self.settings))

    def _count(self, outcome: str) -> None:
        self.metrics.live_frames.labels(outcome).inc()

    async def run(self) -> None:
        t0 = time.monotonic()
        try:
            await self._send_json(self._hello())
            async with anyio.create_task_group() as tg:
                await self._read(tg)
                tg.cancel_scope.cancel()  # a frame in its thread finishes first, then stops
        except* WebSocketDisconnect:  # the client left while a frame or a message went out
            pass
        finally:
            log.info("live session ended after %.0f s: %d frames received, %d stylized, "
                     "%d dropped, %d refused", time.monotonic() - t0, self.received,
                     self.stylized, self.dropped, self.errors)

    def _hello(self) -> dict[str, Any]:
        s = self.settings
        return {"type": "hello", "protocol": PROTOCOL,
                "model": f"{self.engine.card.name}@{self.engine.card.version}",
                # Which served model (?model=, else LIVE_MODEL's) and which others there are.
                "model_name": self.name, "models": self.state.served,
                "styles": self.engine.style_names,
                "limits": {"max_frame_bytes": s.live_max_frame_bytes,
                           "max_frame_pixels": s.live_max_frame_pixels,
                           "idle_timeout_s": s.live_idle_timeout_s}}

    async def _read(self, tg: TaskGroup) -> None:
        """Read messages until the client leaves, goes idle, or the server shuts down."""
        idle = self.settings.live_idle_timeout_s
        while True:
            message = None
            with anyio.move_on_after(idle):
                message = await self.ws.receive()
            if message is None:
                if self.busy:  # the client waits for our answer: not idle
                    continue
                async with self.send_lock:
                    await self.ws.close(IDLE_CLOSE, f"no message for {idle:g} s")
                return
            if message["type"] == "websocket.disconnect":
                return
            if message.get("bytes") is not None:
                await self._frame(message["bytes"], tg)
            elif message.get("text") is not None:
                await self._control(message["text"])

    # -- control messages -------------------------------------------------------------------

    async def _control(self, text: str) -> None:
        try:
            self._apply(self._parse(text))
        except StyleboxError as e:
            await self._error(e)
            return
        await self._send_json({"type": "control", **self._in_force()})

    def _parse(self, text: str) -> dict[str, Any]:
        if len(text) > MAX_CONTROL_CHARS:
            raise LiveMessageError(f"a control message may have at most {MAX_CONTROL_CHARS} "
                                   f"characters, got {len(text)}")
        try:
            body = json.loads(text)
        except ValueError as e:
            raise LiveMessageError(f"a control message must be JSON ({e.msg} at character "
                                   f"{e.pos})") from None
        if not isinstance(body, dict):
            raise LiveMessageError("a control message must be a JSON object, e.g. "
                                   '{"style": "candy", "strength": 0.8}')
        return body

    def _apply(self, body: dict[str, Any]) -> None:
        """Check every field first, then change them all at once (or none)."""
        mix, controls, quality = self.mix, self.controls, self.quality
        if "style" in body:
            if not isinstance(body["style"], str):
                raise LiveMessageError("style must be a string such as 'candy:0.7,mosaic:0.3'",
                                       field="style")
            mix = parse_style_spec(body["style"], self.engine.style_names)

        def bounded(bound: Bound, now: Any) -> Any:  # POST /stylize's bounds, in JSON
            value = body.get(bound.name, now)
            if not bound.ok(value):
                raise LiveMessageError(bound.problem(value), field=bound.name)
            return value

        strength = bounded(STRENGTH, controls.strength)
        keep = body.get("preserve_color", controls.preserve_color)
        if not isinstance(keep, bool):
            raise LiveMessageError("preserve_color must be true or false",
                                   field="preserve_color")
        quality = bounded(QUALITY, quality)
        self.mix, self.controls = mix, Controls(float(strength), keep)
        self.quality = quality

    def _in_force(self) -> dict[str, Any]:
        return {"style": self.mix.spec if self.mix else None,
                "strength": self.controls.strength,
                "preserve_color": self.controls.preserve_color, "quality": self.quality}

    # -- frames -----------------------------------------------------------------------------

    async def _frame(self, data: bytes, tg: TaskGroup) -> None:
        self.received += 1
        seq = self.received
        try:  # cheap checks, on the loop: the size, the first bytes, a style to use
            limit = self.settings.live_max_frame_bytes
            if len(data) > limit:
                raise PayloadTooLargeError(f"a frame may have at most {limit} bytes, got "
                                           f"{len(data)}", max_frame_bytes=limit)
            if sniff(data) not in FRAMES:  # what canvas.toBlob makes
                raise UnsupportedImageError("a live frame must be a JPEG or PNG image",
                                            supported=["JPEG", "PNG"])
            if self.mix is None:
                raise LiveMessageError('choose a style before sending frames: send '
                                       '{"style": "<name>"} first')
        except StyleboxError as e:
            await self._error(e, seq)
            return
        if self.busy:  # one in flight already: drop this one, never queue it
            self.dropped += 1
            self._count("dropped")
            return
        self.busy = True
        tg.start_soon(self._process, data, seq)

    async def _process(self, data: bytes, seq: int) -> None:
        t0 = time.perf_counter()
        state, settings = self.state, self.settings
        try:
            self._follow_reload()
            mix, controls, quality = self.mix, self.controls, self.quality
            assert mix is not None  # _frame checked it; a reload that lost it raised
            # A PNG frame's alpha is not kept: the answer is a JPEG.
            steps = image_path(data, self.stylizer, mix.vector(self.engine.style_names),
                               controls, settings=settings, fmt="jpeg", quality=quality,
                               max_pixels=settings.live_max_frame_pixels)
            del data  # the path holds it until it is decoded
            made = await arun_steps(steps, {"codec": state.codec_limiter,
                                            "network": state.limiter})
        except StyleboxError as e:
            await self._error(e, seq)
            return
        finally:
            self.busy = False  # the next frame may start while this one is being sent
        self.stylized += 1
        self._count("stylized")
        inference_ms = made.stylized.inference_ms
        if self.metrics is not None:
            self.metrics.inference_seconds.observe(inference_ms / 1000)
        h, w = made.stylized.rgb.shape[:2]
        stats = {"type": "frame", "seq": seq, "width": w, "height": h,
                 "server_ms": round((time.perf_counter() - t0) * 1000, 1),
                 "inference_ms": round(inference_ms, 1), "received": self.received,
                 "stylized": self.stylized, "dropped": self.dropped, "style": mix.spec}
        async with self.send_lock:
            await self.ws.send_text(json.dumps(stats))
            await self.ws.send_bytes(made.body)

    def _follow_reload(self) -> None:
        """After `POST /admin/reload`, go on with the new model (and fresh statistics)."""
        engine = self.state.engines.get(self.name)
        if engine is None or engine is self.engine:
            return
        self.engine, self.stylizer = engine, self._stylizer(engine)
        if self.mix is not None:
            names = [n for n, _ in self.mix.parts]
            if not set(names) <= set(engine.style_names):
                self.mix = None
                raise LiveMessageError(
                    f"the server loaded another model without style(s) "
                    f"{', '.join(sorted(set(names) - set(engine.style_names)))}; "
                    f"choose a style again", valid_styles=engine.style_names)

    # -- sending ----------------------------------------------------------------------------

    async def _error(self, e: StyleboxError, seq: int | None = None) -> None:
        self.errors += 1
        if seq is not None:
            self._count("error")
        message: dict[str, Any] = {"type": "error", "problem": problem_body(e)}
        if seq is not None:
            message["seq"] = seq
        await self._send_json(message)

    async def _send_json(self, message: dict[str, Any]) -> None:
        async with self.send_lock:
            await self.ws.send_text(json.dumps(message))


def origin_allowed(websocket: WebSocket, cors_origins: list[str]) -> bool:
    """Whether a browser page may open this session. Browsers apply no CORS to WebSockets,
    so without this any site a user visits could open sessions from their browser to a
    stylebox it can reach (one on their own machine, with no key) and use it. A handshake
    with an `Origin` must come from this server's own pages (Origin's host = Host; a proxy
    must pass Host on) or from a CORS_ORIGINS origin; one without (a program, not a browser)
    passes."""
    origin = websocket.headers.get("origin")
    if origin is None:
        return True
    if "*" in cors_origins or origin in cors_origins:
        return True
    return urlsplit(origin).netloc.lower() == (websocket.headers.get("host") or "").lower()


def live_model(state: StateDep, model: Annotated[str | None, Query(description=(
        "which served model (GET /models lists them); absent: STYLEBOX_LIVE_MODEL's"))] = None
               ) -> str:
    """The session's model by name: `?model=NAME`, else the live model (service/models.py);
    one this server does not serve refuses the handshake (404)."""
    return known_model(state, state.live_model if model is None else model)


# At most max_live_sessions at once (service/http/admission.py).
@router.websocket("/live", dependencies=[LIVE_SESSION])
async def live(websocket: WebSocket, state: StateDep,
               name: Annotated[str, Depends(live_model)]) -> None:
    if not origin_allowed(websocket, state.settings.cors_origins):
        await refuse_handshake(problem(
            403, "this page's origin may not open live sessions here; add it to "
            "STYLEBOX_CORS_ORIGINS", title="Forbidden origin",
            type_=TYPE_PREFIX + "forbidden-origin", instance="/live"),
            websocket.scope, websocket.receive, websocket.send)
        return
    engine: Engine | None = state.engines.get(name)
    if engine is None or state.draining:
        detail = ("the server is shutting down" if state.draining
                  else "the model is not loaded yet")
        retry = str(state.settings.retry_after_s)
        await refuse_handshake(problem(503, detail, title="Service not ready",
                                       type_=TYPE_PREFIX + "not-ready", instance="/live",
                                       headers={"Retry-After": retry}),
                               websocket.scope, websocket.receive, websocket.send)
        return
    # Echo our protocol when offered (browsers fail a handshake that offers protocols and
    # gets none back); never a `stylebox.key.` one, which would send the key back.
    offered = websocket.scope.get("subprotocols") or []
    await websocket.accept(subprotocol=PROTOCOL if PROTOCOL in offered else None)
    await LiveSession(websocket, state, name, engine).run()
