"""The OpenAPI document against the server, by hand, where a fuzzer cannot see the mismatch:
every status an operation can answer is in its `responses`, with the problem+json schema,
503s carry Retry-After as documented, and each query bound in the schema is the one the
server enforces (probed at the bound and one step past it)."""

from __future__ import annotations

import re

import pytest

from stylebox.service.http.access import open_paths
from stylebox.service.state import state_of
from stylebox.service.styles import STYLE_SPEC_PATTERN
from tests.conftest import make_client, png

PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
PNG = png(20, 24, seed=0)


@pytest.fixture(scope="module")
def schema(client) -> dict:
    return client.get("/openapi.json").json()


def _ops(schema: dict):
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            yield f"{method.upper()} {path}", op


def test_every_error_response_is_problem_json(schema):
    assert schema["components"]["schemas"]["Problem"]["required"] == [
        "type", "title", "status", "detail"]
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    errors = 0
    for label, op in _ops(schema):
        for status, resp in op["responses"].items():
            if status[0] in "45":
                errors += 1
                assert resp["content"] == PROBLEM, (label, status)
                assert resp["description"], (label, status)
            if status == "503":
                assert resp["headers"]["Retry-After"]["required"] is True, label
    assert errors >= 13


def test_stylize_documents_every_status_it_answers(schema):
    statuses = set(schema["paths"]["/stylize"]["post"]["responses"])
    assert {"200", "400", "404", "408", "413", "415", "422", "503"} <= statuses
    for path in ("/styles", "/model", "/styles/{name}/preview.png", "/sample.png"):
        assert "503" in schema["paths"][path]["get"]["responses"], path  # before the model


def test_style_is_required_with_the_grammar_the_server_parses(schema, client):
    (param,) = [p for p in schema["paths"]["/stylize"]["post"]["parameters"]
                if p["name"] == "style"]
    assert param["required"] is True
    assert param["schema"]["pattern"] == STYLE_SPEC_PATTERN
    assert all(re.fullmatch(STYLE_SPEC_PATTERN, e["value"]) for e in param["examples"].values())
    r = client.post("/stylize", files={"image": ("x.png", PNG)})  # no style
    assert r.status_code == 422 and r.json()["valid_styles"] == ["candy", "mosaic", "udnie"]


def test_the_style_examples_are_styles_this_server_serves(fast_onnx):
    """A model without mosaic (ink, candy): the examples name its own styles, so "Try it
    out" on the docs page, or a client taking them from the document, is answered 200."""
    from stylebox.service.backends.ort import OrtEngine

    with make_client(OrtEngine(fast_onnx), fast_onnx) as c:
        schema = c.get("/openapi.json").json()
        for path in ("/stylize", "/videos"):
            (param,) = [p for p in schema["paths"][path]["post"]["parameters"]
                        if p["name"] == "style"]
            values = [e["value"] for e in param["examples"].values()]
            assert values == ["ink", "ink:0.7,candy:0.3"], (path, values)
        for value in values:
            r = c.post("/stylize", params={"style": value}, files={"image": ("x.png", PNG)})
            assert r.status_code == 200, (value, r.text)


def _bounded_query_params(schema: dict) -> list[tuple[str, dict]]:
    out = []
    for p in schema["paths"]["/stylize"]["post"]["parameters"]:
        s = p["schema"]
        s = next((a for a in s.get("anyOf", []) if "minimum" in a), s)
        if "minimum" in s or "maximum" in s:
            out.append((p["name"], s))
    return out


def test_the_schema_bounds_are_the_enforced_ones(schema, client):
    """At each documented bound 200, one step past it 422: neither side is looser."""
    params = _bounded_query_params(schema)
    assert {n for n, _ in params} == {"quality", "strength", "max_side"}
    for name, s in params:
        step = 1 if s["type"] == "integer" else 1e-6
        for bound, past in (("minimum", -step), ("maximum", step)):
            value = s[bound]
            ok = client.post("/stylize", params={"style": "candy", "format": "jpeg",
                                                  name: value},
                             files={"image": ("x.png", PNG)})
            assert ok.status_code == 200, (name, value, ok.text)
            bad = client.post("/stylize", params={"style": "candy", name: value + past},
                              files={"image": ("x.png", PNG)})
            assert bad.status_code == 422, (name, value + past)
            assert bad.headers["content-type"] == "application/problem+json"
            assert bad.json()["errors"][0]["loc"] == ["query", name]


def test_not_ready_503_carries_retry_after(tiny_onnx):
    with make_client(None, tiny_onnx, retry_after_s=7) as c:
        state_of(c.app).engine = None  # as before the lifespan has loaded it
        for path in ("/readyz", "/styles", "/model"):
            r = c.get(path)
            assert r.status_code == 503 and r.headers["retry-after"] == "7", path
            assert r.headers["content-type"] == "application/problem+json"


def test_with_a_key_every_protected_operation_documents_401(tiny_onnx, engine):
    with make_client(engine, tiny_onnx, api_key="k") as c:
        keyed = c.get("/openapi.json").json()
        open_ = open_paths(c.app, metrics_public=True)
        for label, op in _ops(keyed):
            if label.split()[1] in open_:
                assert "security" not in op and "401" not in op["responses"], label
                continue
            assert op["security"] == [{"bearer": []}, {"apiKey": []}], label
            resp = op["responses"]["401"]
            assert resp["content"] == PROBLEM and "WWW-Authenticate" in resp["headers"]
            assert c.get("/styles").headers["www-authenticate"].startswith("Bearer")


def test_optimize_documents_this_servers_bounds(tiny_onnx, engine):
    """POST /optimize's `max_side` and `time_limit_s` are bounded by the server's settings
    (a 422 above them), below the route's own static bounds: the document states those."""
    with make_client(engine, tiny_onnx, trainer_optimize_max_side=512,
                     trainer_optimize_max_seconds=60) as c:
        params = {p["name"]: p["schema"]
                  for p in c.get("/openapi.json").json()["paths"]["/optimize"]["post"]
                  ["parameters"]}
    assert params["max_side"]["maximum"] == 512
    (limit,) = [b for b in params["time_limit_s"]["anyOf"] if b.get("type") == "number"]
    assert limit["maximum"] == 60
