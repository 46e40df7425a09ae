"""Optional API key (`STYLEBOX_API_KEY`): `Authorization: Bearer <key>` or `X-API-Key: <key>`;
on a WebSocket handshake also as the subprotocol `stylebox.key.<base64url of the key>`.
A header's value is compared as the raw bytes sent: a key beyond ASCII goes as its UTF-8
bytes (the web page sends it so; `fetch` cannot take it as text).

With no key set, nothing is checked. With a key, every route needs it except those whose
router is declared open (service/http/access.py): the probes (`/healthz`, `/readyz`), the
fixed pages that run no model (the web page shell, its static files, the sample picture, the
API docs and schema) and `/metrics` while `metrics_public` (the default). Everything those
pages *fetch* from the API (styles, model card, style previews, stylize) needs the key, so
with a key set the page must send it. A path no route has needs the key too (its 404 is a
401 without it).

Every credential a request presents must be the key (a wrong one beside a right one is a
401). The key is compared in constant time: both sides are hashed to the same length first, so
neither the content nor the length of the key leaks through timing. Failures are 401
problem+json with `WWW-Authenticate: Bearer realm="stylebox"` (`UnauthorizedError`); a
WebSocket handshake without the key is refused with that same 401 before it is accepted
(service/http/problems.py, `refuse_handshake`). Browsers cannot set headers on a WebSocket,
and the only header their `new WebSocket(url, protocols)` lets a page fill is
`Sec-WebSocket-Protocol`, so the key rides there; a query parameter would work too but lands
in access logs, proxy logs and browser history. The server never echoes the key protocol
back (it accepts `stylebox.v1`).

`check_key` runs in each route's access dependency (service/http/access.py), the first of
its dependencies: after CORS (so preflights, which carry no credentials, still work), before
admission control (so unauthenticated requests never take a slot) and before the route reads
its body.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from pydantic import SecretStr
from starlette.requests import HTTPConnection
from starlette.types import Scope

from stylebox.service.http.errors import UnauthorizedError

REALM = 'Bearer realm="stylebox"'
# A WebSocket subprotocol that carries the key: this prefix, then the key's UTF-8 bytes in
# unpadded base64url (subprotocols are HTTP tokens; a key may hold any character).
KEY_PROTOCOL = "stylebox.key."


def key_digest(value: str | bytes) -> bytes:
    raw = value.encode("utf-8") if isinstance(value, str) else value
    return hashlib.sha256(raw).digest()


def key_protocol(key: str) -> str:
    """The subprotocol that presents `key` on a WebSocket handshake."""
    return KEY_PROTOCOL + base64.urlsafe_b64encode(key.encode("utf-8")).rstrip(b"=").decode()


def _protocol_key(token: str) -> bytes:
    """The key a `stylebox.key.` subprotocol carries; undecodable text is presented as it is
    (so it counts as a wrong key, not as no key)."""
    text = token[len(KEY_PROTOCOL):]
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return text.encode("utf-8", "replace")


def presented_keys(scope: Scope) -> list[bytes]:
    """The credentials in `Authorization` (a Bearer token; any other value counts as a wrong
    one) and `X-API-Key`, raw bytes, and on a WebSocket handshake those in `stylebox.key.`
    subprotocols."""
    keys = []
    for name, value in scope.get("headers", ()):
        if name == b"x-api-key":
            keys.append(value.strip())
        elif name == b"authorization":
            scheme, _, token = value.strip().partition(b" ")
            bearer = scheme.lower() == b"bearer" and token.strip()
            # Not a Bearer token: a wrong credential whatever it says (the NUL, which no
            # header can carry, keeps a scheme-less "Authorization: <key>" from matching).
            keys.append(token.strip() if bearer else b"\0" + value.strip())
    if scope.get("type") == "websocket":  # the server parsed Sec-WebSocket-Protocol already
        keys += [_protocol_key(p) for p in scope.get("subprotocols", ())
                 if p.startswith(KEY_PROTOCOL)]
    return keys


def key_matches(keys: list[bytes], want: bytes) -> bool:
    """Whether keys were presented and every one hashes to `want` (a `key_digest`), in
    constant time per key. A wrong credential beside a right one is refused: a request that
    carries two keys that disagree is ambiguous, and accepting it would mean a wrong key
    can ride along unnoticed (Schemathesis' ignored_auth check sends exactly that)."""
    ok = bool(keys)
    for key in keys:  # no early exit: every presented key costs the same
        ok &= hmac.compare_digest(key_digest(key), want)
    return ok


def check_key(connection: HTTPConnection, api_key: SecretStr | None) -> None:
    """`UnauthorizedError` (401) unless `api_key` is None or the request presents it."""
    if api_key is None:
        return
    keys = presented_keys(connection.scope)
    if key_matches(keys, key_digest(api_key.get_secret_value())):
        return
    if keys:
        raise UnauthorizedError("the API key is not valid", f'{REALM}, error="invalid_token"')
    detail = ("this server needs an API key: send 'Authorization: Bearer <key>' "
              "or 'X-API-Key: <key>'")
    if connection.scope["type"] == "websocket":
        detail += f" (or, from a browser, the subprotocol '{KEY_PROTOCOL}<base64url>')"
    raise UnauthorizedError(detail, REALM)
