"""Optional API key (STYLEBOX_API_KEY), CORS (off by default) and security headers."""

from __future__ import annotations

import pytest

from stylebox.service.http.auth import key_digest, key_matches, presented_keys
from stylebox.service.settings import Settings
from stylebox.service.state import state_of
from tests.conftest import make_client, png

KEY = "s3cret-key-with-enough-entropy"


@pytest.fixture(scope="module")
def locked(tiny_onnx, engine):
    with make_client(engine, tiny_onnx, api_key=KEY) as c:
        yield c


PROTECTED = [("GET", "/styles"), ("GET", "/model"), ("POST", "/stylize?style=candy"),
             ("GET", "/styles/candy/preview.png"), ("GET", "/no-such-route")]


@pytest.mark.parametrize("method,path", PROTECTED)
def test_without_a_key_is_401_with_challenge(locked, method, path):
    r = locked.request(method, path)
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == 'Bearer realm="stylebox"'
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["type"].endswith(":unauthorized") and "X-API-Key" in body["detail"]
    assert KEY not in r.text


@pytest.mark.parametrize("headers", [
    {"Authorization": "Bearer wrong"}, {"X-API-Key": "wrong"}, {"X-API-Key": KEY[:-1]},
    {"X-API-Key": KEY + "x"}, {"Authorization": f"Basic {KEY}"}, {"Authorization": KEY},
    {"Authorization": "Bearer "}, {"X-API-Key": ""},
    {"Authorization": "Bearer wrong", "X-API-Key": KEY},  # a wrong one beside the right one
    {"Authorization": f"Bearer {KEY}", "X-API-Key": "wrong"},
])
def test_a_wrong_key_is_401(locked, headers):
    r = locked.get("/styles", headers=headers)
    assert r.status_code == 401 and KEY not in r.text
    assert r.headers["www-authenticate"].startswith('Bearer realm="stylebox"')


@pytest.mark.parametrize("headers", [
    {"Authorization": f"Bearer {KEY}"}, {"authorization": f"bearer {KEY}"},
    {"X-API-Key": KEY}, {"x-api-key": f"  {KEY} "},
])
def test_the_right_key_in_either_header_works(locked, headers):
    assert locked.get("/styles", headers=headers).status_code == 200
    r = locked.post("/stylize?style=candy", headers=headers,
                    files={"image": ("x.png", png(8, 8))})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/", "/openapi.json",
                                  "/docs", "/static/app.js", "/sample.png"])
def test_open_paths_need_no_key(locked, path):
    assert locked.get(path).status_code == 200


def test_metrics_can_be_locked_too(tiny_onnx, engine):
    with make_client(engine, tiny_onnx, api_key=KEY, metrics_public=False) as c:
        assert c.get("/metrics").status_code == 401
        assert c.get("/metrics", headers={"X-API-Key": KEY}).status_code == 200
        assert c.get("/healthz").status_code == 200


def test_unauthenticated_requests_are_rejected_before_the_body_is_read(locked):
    """A 401 costs no upload: the app never asked for the body, and no slot was taken."""
    r = locked.post("/stylize?style=candy", content=b"\0" * 5_000_000,
                    headers={"Content-Type": "image/png"})
    assert r.status_code == 401
    assert state_of(locked.app).admission.active == 0


def test_key_comparison_is_constant_time_shaped():
    """Every presented key is hashed and compared, with no early exit (no length leak), and
    every one must be the key: a wrong one beside the right one is refused."""
    want = key_digest(KEY)
    assert key_matches([KEY.encode()], want) and key_matches([KEY.encode()] * 2, want)
    assert not key_matches([b"x", KEY.encode()], want) and not key_matches([b"x" * 1000], want)
    assert not key_matches([], want)
    scope = {"headers": [(b"authorization", b"Bearer a"), (b"x-api-key", b"b")]}
    assert presented_keys(scope) == [b"a", b"b"]


def test_openapi_documents_the_schemes_when_a_key_is_set(locked):
    schema = locked.get("/openapi.json").json()
    assert set(schema["components"]["securitySchemes"]) == {"bearer", "apiKey"}
    assert schema["paths"]["/stylize"]["post"]["security"]
    assert "security" not in schema["paths"]["/healthz"]["get"]


def test_empty_key_setting_means_no_auth(tiny_onnx, engine, monkeypatch):
    monkeypatch.setenv("STYLEBOX_API_KEY", "")
    assert Settings().api_key is None
    monkeypatch.setenv("STYLEBOX_API_KEY", KEY)
    s = Settings()
    assert s.api_key.get_secret_value() == KEY and KEY not in repr(s)


def test_no_key_configured_means_open(tiny_onnx, engine):
    with make_client(engine, tiny_onnx) as c:
        assert c.get("/styles").status_code == 200
        schema = c.get("/openapi.json").json()
        assert "securitySchemes" not in schema.get("components", {})


# -- CORS ------------------------------------------------------------------------------------

def test_cors_is_off_by_default(tiny_onnx, engine):
    with make_client(engine, tiny_onnx) as c:
        r = c.get("/styles", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in r.headers
        r = c.options("/stylize", headers={"Origin": "https://evil.example",
                                           "Access-Control-Request-Method": "POST"})
        assert "access-control-allow-origin" not in r.headers


def test_cors_allows_only_configured_origins(tiny_onnx, engine):
    with make_client(engine, tiny_onnx, cors_origins="https://app.example, https://b.example",
                     api_key=KEY) as c:
        # The preflight carries no credentials and must still pass.
        r = c.options("/stylize", headers={"Origin": "https://app.example",
                                           "Access-Control-Request-Method": "POST",
                                           "Access-Control-Request-Headers": "x-api-key"})
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "https://app.example"
        assert "x-api-key" in r.headers["access-control-allow-headers"].lower()
        r = c.get("/styles", headers={"Origin": "https://app.example", "X-API-Key": KEY})
        assert r.headers["access-control-allow-origin"] == "https://app.example"
        assert "x-stylebox-style" in r.headers["access-control-expose-headers"].lower()
        r = c.get("/styles", headers={"Origin": "https://evil.example", "X-API-Key": KEY})
        assert "access-control-allow-origin" not in r.headers


# -- security headers -------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/", "/styles", "/healthz", "/nope", "/docs"])
def test_security_headers_on_every_response(locked, path):
    r = locked.get(path, headers={"X-API-Key": KEY})
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["referrer-policy"] == "no-referrer"


def test_html_pages_get_a_content_security_policy(locked):
    page = locked.get("/").headers["content-security-policy"]
    assert "default-src 'self'" in page and "frame-ancestors 'none'" in page
    assert "unsafe-inline" not in page.split("script-src")[1].split(";")[0]
    docs = locked.get("/docs").headers["content-security-policy"]
    assert "https://cdn.jsdelivr.net" in docs  # Swagger UI's own assets still load
    assert "content-security-policy" not in locked.get("/healthz").headers  # JSON: not needed
