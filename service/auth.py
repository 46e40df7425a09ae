"""Optional API key (`STYLEBOX_API_KEY`): `Authorization: Bearer <key>` or `X-API-Key: <key>`.

With no key set, this layer is not installed at all. With a key, every request needs it
except the open paths below:

- `/healthz`, `/readyz`: orchestrators and load balancers probe them without credentials.
- `/metrics` while `metrics_public` (the default): Prometheus scrapes are usually
  network-restricted rather than authenticated, and the series hold counts, not data.
  With `STYLEBOX_METRICS_PUBLIC=false` it needs the key too (Prometheus sends it with
  `authorization: {credentials: ...}` in its scrape config).
- `/` (the web page shell), `/static/*` (its CSS/JS), `/sample.png` (a picture drawn by
  code), `/docs`, `/redoc`, `/openapi.json`: fixed content that runs no model and holds no
  data; a browser cannot attach a header to a page load, so a key-protected page could not
  be opened at all. Everything those pages *fetch* from the API (styles, model card, style
  previews, stylize) needs the key, so with a key set the page must send it.

The key is compared in constant time: both sides are hashed to the same length first, so
neither the content nor the length of the key leaks through timing. Failures are 401
problem+json with `WWW-Authenticate: Bearer realm="stylebox"`. It is a pure ASGI layer
inside CORS (so preflights, which carry no credentials, still work) and outside admission
control (so unauthenticated requests never take a slot).
"""

from __future__ import annotations

import hashlib
import hmac

from starlette.types import ASGIApp, Receive, Scope, Send
from stylebox.service.problems import TYPE_PREFIX, problem

OPEN_PATHS = frozenset({"/healthz", "/readyz"})
PAGE_PATHS = frozenset({"/", "/sample.png", "/docs", "/docs/oauth2-redirect", "/redoc",
                        "/openapi.json"})
PAGE_PREFIXES = ("/static/",)  # the page's CSS/JS/icon: fixed files from a fixed list
METRICS_PATH = "/metrics"


def open_paths(metrics_public: bool) -> frozenset[str]:
    return OPEN_PATHS | PAGE_PATHS | ({METRICS_PATH} if metrics_public else frozenset())


REALM = 'Bearer realm="stylebox"'


def key_digest(value: str | bytes) -> bytes:
    raw = value.encode("utf-8") if isinstance(value, str) else value
    return hashlib.sha256(raw).digest()


def presented_keys(scope: Scope) -> list[bytes]:
    """The credentials in `Authorization: Bearer ...` and `X-API-Key`, raw bytes."""
    keys = []
    for name, value in scope.get("headers", ()):
        if name == b"x-api-key":
            keys.append(value.strip())
        elif name == b"authorization":
            scheme, _, token = value.strip().partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                keys.append(token.strip())
    return keys


def key_matches(keys: list[bytes], want: bytes) -> bool:
    """Whether any presented key hashes to `want` (a `key_digest`), in constant time per key."""
    ok = False
    for key in keys:  # no early exit: every presented key costs the same
        ok |= hmac.compare_digest(key_digest(key), want)
    return ok


class APIKeyMiddleware:
    def __init__(self, app: ASGIApp, api_key: str, metrics_public: bool = True) -> None:
        self.app = app
        self._want = key_digest(api_key)
        self.open_paths = open_paths(metrics_public)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path in self.open_paths or path.startswith(PAGE_PREFIXES):
            await self.app(scope, receive, send)
            return
        keys = presented_keys(scope)
        if key_matches(keys, self._want):
            await self.app(scope, receive, send)
            return
        if keys:
            detail = "the API key is not valid"
            challenge = f'{REALM}, error="invalid_token"'
        else:
            detail = ("this server needs an API key: send 'Authorization: Bearer <key>' "
                      "or 'X-API-Key: <key>'")
            challenge = REALM
        await problem(401, detail, title="Unauthorized", type_=TYPE_PREFIX + "unauthorized",
                      instance=scope["path"], headers={"WWW-Authenticate": challenge}
                      )(scope, receive, send)
