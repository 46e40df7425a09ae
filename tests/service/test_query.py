"""A query parameter a route does not declare is a 422 problem that names it and lists the
route's own (service/http/access.py: no_unknown_query, run by every route's guard), never
silently ignored with the default in force; pages are left alone, and what the project's
page sends is accepted."""

from __future__ import annotations

import re

import pytest
from starlette.testclient import WebSocketDenialResponse

from tests.conftest import ROOT, make_client, png

PNG = png(16, 24, seed=0)
STYLIZE = ["format", "max_side", "model", "preserve_color", "quality", "strength", "style"]


@pytest.fixture(scope="module")
def client(tiny_onnx, engine, tmp_path_factory):
    with make_client(engine, tiny_onnx, video_dir=str(tmp_path_factory.mktemp("videos"))) as c:
        yield c


@pytest.fixture(scope="module")
def schema(client) -> dict:
    return client.get("/openapi.json").json()


def _query_params(schema: dict, path: str, method: str) -> list[str]:
    """The query parameters the OpenAPI document lists for an operation."""
    op = schema["paths"][path][method]
    return sorted(p["name"] for p in op.get("parameters", []) if p["in"] == "query")


def _unknown(r, unknown: list[str]) -> dict:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["type"] == "urn:stylebox:problem:unknown-query-parameter"
    assert body["unknown_parameters"] == unknown
    for name in unknown:
        assert repr(name) in body["detail"]
    return body


@pytest.mark.parametrize("url, unknown, meant", [
    ("/stylize?style=candy&strenght=0.2", "strenght", "strength"),
    ("/stylize?style=candy&preserve_colour=true", "preserve_colour", "preserve_color"),
    ("/videos?style=candy&stabilise=false", "stabilise", "stabilize"),
])
def test_a_misspelt_parameter_is_refused_not_ignored(client, schema, url, unknown, meant):
    path = url.split("?")[0]
    r = client.post(url, content=PNG, headers={"Content-Type": "image/png"})
    body = _unknown(r, [unknown])
    takes = _query_params(schema, path, "post")
    assert body["valid_parameters"] == takes and meant in takes
    assert f"did you mean {meant!r}?" in body["detail"]
    assert body["detail"].endswith(f"POST {path} takes: {', '.join(takes)}")


def test_several_unknown_parameters_are_named_at_once(client):
    r = client.post("/stylize?style=candy&debug=1&admin=true&__proto__=x&quality=80",
                    files={"image": ("x.png", PNG)})
    body = _unknown(r, ["__proto__", "admin", "debug"])
    assert body["detail"].startswith("unknown query parameters ")
    assert body["valid_parameters"] == STYLIZE


def test_every_operation_refuses_one_and_documents_the_422(client, schema):
    """The 422 lists exactly the query parameters the OpenAPI document gives the operation."""
    fill = {"name": "candy", "job_id": "0" * 24}
    checked = []
    for path, ops in schema["paths"].items():
        url = re.sub(r"\{(\w+)\}", lambda m: fill[m.group(1)], path) + "?zz_unknown=1"
        for method, op in ops.items():
            r = client.request(method.upper(), url)
            if path == "/sample.png":  # a page (Access.PAGE): left alone
                assert r.status_code == 200 and "422" not in op["responses"]
                continue
            body = _unknown(r, ["zz_unknown"])
            assert body["valid_parameters"] == _query_params(schema, path, method)
            assert "422" in op["responses"], (method, path)
            checked.append(f"{method.upper()} {path}")
    assert {"GET /styles", "GET /healthz", "GET /metrics", "POST /stylize", "POST /videos",
            "GET /videos/{job_id}", "POST /admin/reload"} <= set(checked)


def test_pages_are_left_alone(client):
    """Opened from links that may carry others' parameters (campaign tags, cache busters)."""
    for url in ("/?utm_source=mail", "/static/app.js?v=2", "/static/style.css?v=2",
                "/sample.png?v=2", "/docs?x=1", "/openapi.json?x=1"):
        assert client.get(url).status_code == 200, url


def test_known_parameters_and_none_still_work(client):
    r = client.post("/stylize?style=candy&strength=0.5&preserve_color=true&format=jpeg"
                    "&quality=80&max_side=64", files={"image": ("x.png", PNG)})
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert client.get("/styles").status_code == 200


def test_live_refuses_the_handshake_with_the_problem(client):
    with pytest.raises(WebSocketDenialResponse) as refused, \
            client.websocket_connect("/live?key=secret"):
        pass
    body = _unknown(refused.value, ["key"])
    assert body["detail"] == ("unknown query parameter 'key'; WebSocket /live takes: model")
    with client.websocket_connect("/live", subprotocols=["stylebox.v1"]) as ws:
        assert ws.receive_json()["type"] == "hello"


def test_the_page_sends_only_parameters_its_routes_take(schema):
    """service/static/app.js builds each request's query with `new URLSearchParams({...})`
    and `params.set(...)`: every name in it is one the route it is sent to declares, and the
    live WebSocket URL carries `model` alone (`modelQuery`), which WS /live takes."""
    js = (ROOT / "service/static/app.js").read_text()
    blocks = js.split("const params = new URLSearchParams({")[1:]
    assert len(blocks) >= 2  # the photo and the video requests
    for block in blocks:
        literal = block.split("});", 1)[0]
        names = set(re.findall(r"^\s*(\w+):", literal, re.M))
        names |= set(re.findall(r'params\.set\("(\w+)"', block.split("params}", 1)[0]))
        target = re.search(r"`(/\w+)\?\$\{params\}`", block)
        assert target and names, block[:300]
        assert names <= set(_query_params(schema, target.group(1), "post")), target.group(1)
    live = re.search(r"new WebSocket\(`([^`]*)`", js)
    assert live and live.group(1).endswith("/live${modelQuery()}"), live
    body = js.split("function modelQuery", 1)[1].split("\n}", 1)[0]
    assert re.findall(r"(\w+)=\$\{", body) == ["model"], body
