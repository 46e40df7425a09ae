"""Graceful shutdown for `stylebox serve`: readiness turns false first, in-flight work ends.

On the first SIGTERM/SIGINT the app is marked draining (`/readyz` answers 503), and the
server keeps accepting and serving for `drain_s` seconds so that load balancers and
orchestrators see the readiness change and stop sending traffic. Then uvicorn's own
graceful shutdown runs: the listener closes, requests in flight finish (for at most
`request_timeout_s`, the longest an admitted request may take anyway), then the lifespan
ends. A second signal skips the drain wait; a third forces an exit, as in uvicorn.
"""

from __future__ import annotations

import logging
import sys
import time
from types import FrameType

import uvicorn
from fastapi import FastAPI

from stylebox.service.http.middleware import JsonFormatter
from stylebox.service.settings import Settings
from stylebox.service.state import state_of

log = logging.getLogger("stylebox.service")


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: FastAPI, drain_s: float) -> None:
        super().__init__(config)
        self._app = app
        self._drain_s = drain_s
        self._drain_until: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._drain_until is None and self._drain_s > 0:
            # Signal context: only set flags here; on_tick (every 0.1 s) does the rest.
            state_of(self._app).draining = True
            self._drain_until = time.monotonic() + self._drain_s
            log.info("shutting down: not ready, draining for %.1f s", self._drain_s)
            return
        state_of(self._app).draining = True
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        if self._drain_until is not None and time.monotonic() >= self._drain_until:
            self.should_exit = True
        return await super().on_tick(counter)


def serve(app: FastAPI, settings: Settings, log_level: str = "info") -> None:
    """Run uvicorn with the draining shutdown; blocks until the server has stopped."""
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, log_level=log_level,
        access_log=False,  # ProblemMiddleware logs one line per request, with the style
        timeout_graceful_shutdown=max(1, int(settings.request_timeout_s + 0.999)),
        log_config=None,  # keep the root logging set up by `stylebox serve`
    )
    DrainingServer(config, app, settings.drain_s).run()


class _StderrHandler(logging.StreamHandler):
    """Writes to sys.stderr as it is at each record, not as it was when the handler was made:
    a caller that redirects stderr later (a test, an embedding program) is followed, and no
    record goes to a stream that was closed since."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:  # StreamHandler.__init__ assigns one; ignore it
        pass


def configure_logging(level: str, fmt: str) -> None:
    """Text (`time level logger: message`) or one JSON object per line, on stderr."""
    handler = _StderrHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
