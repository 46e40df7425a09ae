"""Route access (service/http/access.py): each router declares who may call it with one guard
dependency (`APIRouter(dependencies=[guard(Access.KEYED)])`), and each route whether
admission control bounds it (`dependencies=[ADMITTED]`); the requests, the OpenAPI document
and the start-up log read the same declarations. A route that declares no access is refused
when the app is made or starts, never served open; for the real app the declarations give
the lists that were once written out by hand."""

from __future__ import annotations

import ast

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketDenialResponse
from starlette.websockets import WebSocketDisconnect

from stylebox.service.http.access import Access, docs_pages, guard, open_paths
from stylebox.service.http.admission import ADMITTED
from stylebox.service.http.openapi import operations
from stylebox.service.routers import stylize
from stylebox.service.state import state_of
from tests.conftest import ROOT, make_app, png

KEY = "route-marks-key"
# The hand-written lists before the routes declared their access: auth.OPEN_PATHS,
# PAGE_PATHS and PAGE_PREFIXES ("/static/"), METRICS_PATH; admission.GUARDED;
# middleware.DOCS_PATHS.
OPEN_BEFORE = {"/healthz", "/readyz", "/", "/sample.png", "/docs", "/docs/oauth2-redirect",
               "/redoc", "/openapi.json", "/static/{name}"}
GUARDED_BEFORE = {("/stylize", "POST")}
DOCS_BEFORE = {"/docs", "/redoc", "/docs/oauth2-redirect"}


def test_the_declared_access_gives_the_lists_it_replaces(tiny_onnx):
    app = make_app(None, tiny_onnx)
    assert open_paths(app, metrics_public=True) == OPEN_BEFORE | {"/metrics"}
    assert open_paths(app, metrics_public=False) == OPEN_BEFORE
    ops = operations(app)
    assert {op for op, (_, admitted) in ops.items() if admitted} == GUARDED_BEFORE
    assert {op for op, (access, _) in ops.items() if access is Access.KEYED} == {
        ("/stylize", "POST"), ("/videos", "POST"), ("/videos/{job_id}", "GET"),
        ("/videos/{job_id}", "DELETE"), ("/videos/{job_id}/result", "GET"),
        ("/videos/{job_id}/cancel", "POST"), ("/styles", "GET"),
        ("/styles/{name}/preview.png", "GET"), ("/model", "GET"), ("/models", "GET"),
        ("/admin/reload", "POST"),
        # Trainer jobs (style edits also need the key where stylizing is open: test_trainer).
        ("/styles", "POST"), ("/styles/{name}", "DELETE"), ("/optimize", "POST"),
        ("/jobs", "GET"), ("/jobs/{job_id}", "GET"), ("/jobs/{job_id}", "DELETE"),
        ("/jobs/{job_id}/preview", "GET"), ("/jobs/{job_id}/result", "GET"),
        ("/jobs/{job_id}/cancel", "POST")}
    pages = {r.path for r in app.routes if getattr(r, "endpoint", None) in docs_pages(app)}
    assert pages == DOCS_BEFORE


@pytest.fixture(scope="module")
def locked(tiny_onnx, engine):
    with TestClient(make_app(engine, tiny_onnx, api_key=KEY)) as c:
        yield c


@pytest.mark.parametrize("method,path,status", [
    ("GET", "/static/app.js", 200), ("HEAD", "/docs", 200),
    ("POST", "/healthz", 405),  # an open route's path: its 405, no key needed
    ("GET", "/static/a/b", 401), ("GET", "/metricsx", 401),  # no route: keyed
    ("DELETE", "/styles", 401),  # a keyed route's path: the key first
    ("GET", "/styles/candy/preview.png", 401), ("GET", "/styles", 401), ("GET", "/live", 401),
])
def test_requests_meet_the_access_of_the_route_the_router_chose(locked, method, path, status):
    r = locked.request(method, path)
    assert r.status_code == status, r.text
    if status == 401:
        assert r.json()["type"].endswith(":unauthorized")
        assert locked.request(method, path, headers={"X-API-Key": KEY}).status_code != 401


def test_a_trailing_slash_is_redirected_before_any_guard(locked):
    """The router's own redirect: the route it names then asks for the key as usual."""
    r = locked.get("/healthz/", follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"].endswith("/healthz")
    assert locked.post("/stylize/?style=candy", files={"image": ("x.png", png(8, 8))}
                       ).status_code == 401


def test_websocket_handshakes_meet_the_websocket_routes(locked):
    """WS /live is keyed (401 before the handshake completes); a handshake on a path with
    no WebSocket route is refused by the router."""
    with pytest.raises(WebSocketDenialResponse) as refused, locked.websocket_connect("/live"):
        pass
    assert refused.value.status_code == 401
    with pytest.raises(WebSocketDisconnect), locked.websocket_connect("/healthz"):
        pass


def _work_router(*dependencies) -> APIRouter:
    router = APIRouter(dependencies=list(dependencies))

    @router.post("/work")
    def work() -> dict[str, str]:
        return {"done": "yes"}

    return router


def test_a_route_that_declares_no_access_is_refused_not_served(tiny_onnx, engine):
    app = make_app(engine, tiny_onnx, api_key=KEY)
    app.include_router(_work_router())  # added after create_app: the start-up refuses it
    with pytest.raises(RuntimeError, match=r"POST /work: 0 access guards"), TestClient(app):
        pass
    twice = make_app(engine, tiny_onnx)
    twice.include_router(_work_router(guard(Access.PAGE), guard(Access.KEYED)))
    with pytest.raises(RuntimeError, match=r"POST /work: 2 access guards"), TestClient(twice):
        pass
    mounted = make_app(engine, tiny_onnx)
    mounted.mount("/sub", FastAPI())  # a mount cannot carry a guard
    with pytest.raises(RuntimeError, match=r"/sub: a Mount"), TestClient(mounted):
        pass


@pytest.mark.parametrize("admitted", [False, True])
def test_a_keyed_route_needs_the_key_and_is_admitted_only_if_declared(tiny_onnx, engine,
                                                                     admitted):
    app = make_app(engine, tiny_onnx, api_key=KEY)
    app.include_router(_work_router(guard(Access.KEYED), *([ADMITTED] if admitted else [])))
    with TestClient(app) as c:
        assert c.post("/work").status_code == 401
        admission = state_of(app).admission
        admission.active = admission.limit  # at capacity: an admitted route is refused
        try:
            r = c.post("/work", headers={"X-API-Key": KEY})
        finally:
            admission.active = 0
        if admitted:
            assert r.status_code == 503 and r.json()["type"].endswith(":overloaded")
        else:
            assert r.status_code == 200 and r.json() == {"done": "yes"}
        op = c.get("/openapi.json").json()["paths"]["/work"]["post"]
        assert op["security"] and "401" in op["responses"]
        assert bool({"408", "503"} & set(op["responses"])) is admitted


def test_declarations_travel_with_the_router(tiny_onnx, engine):
    """The stylize router included again under a prefix: keyed and admission-controlled."""
    app = make_app(engine, tiny_onnx, api_key=KEY)
    app.include_router(stylize.router, prefix="/v2")
    with TestClient(app) as c:
        r = c.post("/v2/stylize?style=candy", files={"image": ("x.png", png(8, 8))})
        assert r.status_code == 401
        ok = c.post("/v2/stylize?style=candy", headers={"X-API-Key": KEY},
                    files={"image": ("x.png", png(8, 8))})
        assert ok.status_code == 200 and ok.headers["content-type"] == "image/png"
        admission = state_of(app).admission
        admission.active = admission.limit
        try:
            r = c.post("/v2/stylize?style=candy", headers={"X-API-Key": KEY},
                       files={"image": ("x.png", png(8, 8))})
            assert r.status_code == 503 and r.json()["type"].endswith(":overloaded")
        finally:
            admission.active = 0
        op = c.get("/openapi.json").json()["paths"]["/v2/stylize"]["post"]
        assert {"401", "408", "503"} <= set(op["responses"]) and op["security"]


def test_routers_import_the_app_never():
    """service.app includes the routers: a router importing it back would be a cycle."""
    for path in (ROOT / "service" / "routers").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert node.module != "stylebox.service.app", path.name
