"""Route marks (service/http/access.py): each route says at its declaration who may call it and
whether admission control bounds it, and every layer reads the rules derived from the app's
routes. An unmarked route is keyed and not admission-controlled; a mark travels with its
route; for the real app the derived rules are the lists that were written out by hand."""

from __future__ import annotations

import ast

import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient

from stylebox.service.http.access import Access, Mark, RouteRules, mark
from stylebox.service.routers import stylize
from tests.conftest import ROOT, make_app, png

KEY = "route-marks-key"
# The hand-written lists before the routes carried marks: auth.OPEN_PATHS, PAGE_PATHS and
# PAGE_PREFIXES ("/static/"), METRICS_PATH; admission.GUARDED; middleware.DOCS_PATHS.
OPEN_BEFORE = {"/healthz", "/readyz", "/", "/sample.png", "/docs", "/docs/oauth2-redirect",
               "/redoc", "/openapi.json", "/static/{name}"}
GUARDED_BEFORE = {("/stylize", "POST")}
DOCS_BEFORE = {"/docs", "/redoc", "/docs/oauth2-redirect"}


def scope(method: str, path: str) -> dict:
    return {"type": "http", "method": method, "path": path}


def test_the_derived_rules_are_the_lists_they_replace(tiny_onnx):
    app = make_app(None, tiny_onnx)
    rules: RouteRules = app.state.route_rules
    assert rules.open_paths(metrics_public=True) == OPEN_BEFORE | {"/metrics"}
    assert rules.open_paths(metrics_public=False) == OPEN_BEFORE
    operations = {(r.path_format, m) for r in iter_route_contexts(app.routes)
                  for m in r.methods or ()}  # WebSocket routes have no methods
    assert {op for op in operations if rules.operation(*op).admission} == GUARDED_BEFORE
    assert {p for p, m in operations if rules.operation(p, m).docs_ui} == DOCS_BEFORE


@pytest.mark.parametrize("method,path,open_", [
    ("GET", "/static/app.js", True), ("HEAD", "/docs", True), ("POST", "/healthz", True),
    ("GET", "/static/a/b", False), ("GET", "/healthz/", False), ("GET", "/metricsx", False),
    ("GET", "/styles/candy/preview.png", False), ("GET", "/styles", False),
])
def test_requests_are_matched_by_each_routes_own_regex(tiny_onnx, method, path, open_):
    """Path parameters match as the router matches them; a 405 is answered by the route
    that has the path (as before: the open list went by path alone); no route: keyed."""
    rules = make_app(None, tiny_onnx).state.route_rules
    assert rules.answering(scope(method, path)).access.is_open(True) is open_


def test_websocket_handshakes_match_websocket_routes_only(tiny_onnx):
    """WS /live is keyed and admission-bounded; an HTTP GET on its path is neither (the
    router answers it 404), and a handshake never takes an HTTP route's mark."""
    rules = make_app(None, tiny_onnx).state.route_rules
    ws = {"type": "websocket", "path": "/live"}
    assert rules.admitted(ws) and rules.answering(ws).access is Access.KEYED
    assert not rules.admitted(scope("GET", "/live"))
    assert not rules.answering({"type": "websocket", "path": "/healthz"}).access.is_open(True)
    assert not rules.admitted({"type": "websocket", "path": "/stylize"})


def test_an_unmarked_route_needs_the_key_and_is_not_admission_controlled(tiny_onnx, engine):
    bare = FastAPI()

    @bare.post("/work")
    def work_bare() -> dict[str, str]:
        return {"done": "yes"}

    rules = RouteRules(bare)
    assert rules.answering(scope("POST", "/work")) == Mark(Access.KEYED, admission=False)
    assert not rules.admitted(scope("POST", "/work")) and not rules.open_paths(True)

    app = make_app(engine, tiny_onnx, api_key=KEY)

    @app.post("/work")  # added after create_app, before the first request
    def work() -> dict[str, str]:
        return {"done": "yes"}

    with TestClient(app) as c:
        assert c.post("/work").status_code == 401
        admission = app.state.admission
        admission.active = admission.limit  # at capacity: a guarded route would be refused
        try:
            r = c.post("/work", headers={"X-API-Key": KEY})
        finally:
            admission.active = 0
        assert r.status_code == 200 and r.json() == {"done": "yes"}
        op = c.get("/openapi.json").json()["paths"]["/work"]["post"]
        assert op["security"] and "401" in op["responses"]
        assert not {"408", "503"} & set(op["responses"])


def test_marks_travel_with_the_route(tiny_onnx, engine):
    """The stylize router included under a prefix, and mounted in a sub-app: both keyed and
    admission-controlled, found through the app's routes."""
    app = make_app(engine, tiny_onnx, api_key=KEY)
    app.include_router(stylize.router, prefix="/v2")
    sub = FastAPI()
    sub.include_router(stylize.router)
    app.mount("/sub", sub)
    rules: RouteRules = app.state.route_rules
    for path in ("/v2/stylize", "/sub/stylize", "/v2/stylize/"):
        assert rules.admitted(scope("POST", path)), path
        assert rules.answering(scope("POST", path)).access is Access.KEYED, path
    assert not rules.admitted(scope("GET", "/v2/stylize"))
    with TestClient(app) as c:
        for path in ("/v2/stylize", "/sub/stylize"):
            r = c.post(f"{path}?style=candy", files={"image": ("x.png", png(8, 8))})
            assert r.status_code == 401, path
        ok = c.post("/v2/stylize?style=candy", headers={"X-API-Key": KEY},
                    files={"image": ("x.png", png(8, 8))})
        assert ok.status_code == 200 and ok.headers["content-type"] == "image/png"
        admission = app.state.admission
        admission.active = admission.limit
        try:
            for path in ("/v2/stylize", "/sub/stylize"):
                r = c.post(f"{path}?style=candy", headers={"X-API-Key": KEY},
                           files={"image": ("x.png", png(8, 8))})
                assert r.status_code == 503 and r.json()["type"].endswith(":overloaded"), path
        finally:
            admission.active = 0
        op = c.get("/openapi.json").json()["paths"]["/v2/stylize"]["post"]
        assert {"401", "408", "503"} <= set(op["responses"]) and op["security"]


def test_an_endpoint_cannot_be_marked_twice_differently():
    def endpoint() -> None: ...

    assert mark(Access.PAGE)(mark(Access.PAGE)(endpoint)) is endpoint  # the same mark: fine
    with pytest.raises(ValueError, match="already marked"):
        mark(Access.PROBE)(endpoint)


def test_routers_import_the_app_never():
    """service.app includes the routers: a router importing it back would be a cycle."""
    for path in (ROOT / "service" / "routers").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert node.module != "stylebox.service.app", path.name
