"""Several models served at once (service/models.py): STYLEBOX_EXTRA_MODELS beside MODEL_PATH's
`default`, chosen per request with `?model=NAME` (POST /stylize, GET /styles and previews,
GET /model, POST /videos, WS /live), listed by GET /models; LIVE_MODEL=auto's choice; the
start-up errors of a bad EXTRA_MODELS; reloads by name.

Two tiny models: the 3-style tiny one (`default`) and a narrower 2-style one (`fast`: ink and
candy), so a style of one is missing from the other.
"""

from __future__ import annotations

import os
import shutil
import time

import numpy as np
import pytest
from pydantic import ValidationError

from stylebox.cli import main
from stylebox.service.controls import Controls
from stylebox.service.engine import ModelLoadError
from stylebox.service.jobs import STALE_BEATS, JobRequest, JobStatus, JobStore
from stylebox.service.models import choose_live
from stylebox.service.settings import Settings
from stylebox.service.state import state_of
from stylebox.service.styles import StyleMix
from stylebox.service.video import probe
from stylebox.videobench import make_clip
from tests.conftest import make_client, pixels, png
from tests.service.test_live import PROTOCOLS, refusal

PNG = png(24, 32, seed=3)
PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def two(tiny_onnx, fast_onnx):
    """A client of an app serving the tiny model as `default` and `fast`, both loaded (and
    timed) by the lifespan, as `stylebox serve` would, on ONNX Runtime f32."""
    with make_client(None, tiny_onnx, extra_models=f"fast={fast_onnx}", engine="onnxruntime",
                     allow_admin_without_key=True) as c:
        yield c


def stylize(c, query: str):
    return c.post(f"/stylize?{query}", content=PNG, headers={"Content-Type": "image/png"})


# -- choosing a model per request ------------------------------------------------------------

def test_stylize_uses_the_model_the_query_names_and_the_default_without_one(two):
    plain, fast, default = (stylize(two, q) for q in (
        "style=candy", "style=candy&model=fast", "style=candy&model=default"))
    for r in (plain, fast, default):
        assert r.status_code == 200, r.text
    assert plain.headers["x-stylebox-model-name"] == "default"
    assert plain.headers["x-stylebox-model"] == "stylebox-tiny@test"  # the card, as before
    assert fast.headers["x-stylebox-model-name"] == "fast"
    assert fast.headers["x-stylebox-model"] == "stylebox-tiny-fast@test"
    assert plain.content == default.content  # `default` is what no model means
    assert not np.array_equal(pixels(plain.content), pixels(fast.content))  # another network


def test_an_unknown_model_is_a_404_problem_listing_the_served_ones(two):
    for method, url in (("POST", "/stylize?style=candy&model=nope"),
                        ("GET", "/styles?model=nope"), ("GET", "/model?model=nope"),
                        ("GET", "/styles/candy/preview.png?model=nope"),
                        ("POST", "/videos?style=candy&model=nope"),
                        ("POST", "/admin/reload?model=nope")):
        r = two.request(method, url, content=PNG, headers={"Content-Type": "image/png"})
        assert r.status_code == 404, (url, r.text)
        assert r.headers["content-type"] == PROBLEM
        body = r.json()
        assert body["type"] == "urn:stylebox:problem:unknown-model", url
        assert body["unknown_model"] == "nope" and body["valid_models"] == ["default", "fast"]
        assert "default, fast" in body["detail"]


def test_a_misspelt_model_parameter_is_still_refused(two):
    r = two.get("/styles?modle=fast")
    assert r.status_code == 422 and "did you mean 'model'" in r.json()["detail"]


def test_each_model_lists_its_own_styles_and_refuses_the_others(two):
    assert [s["name"] for s in two.get("/styles").json()["styles"]] == [
        "candy", "mosaic", "udnie"]
    assert [s["name"] for s in two.get("/styles?model=fast").json()["styles"]] == [
        "ink", "candy"]
    r = stylize(two, "style=mosaic&model=fast")  # the default model's, not fast's
    assert r.status_code == 404 and r.json()["type"] == "urn:stylebox:problem:unknown-style"
    assert r.json()["valid_styles"] == ["ink", "candy"]
    assert stylize(two, "style=ink&model=fast").status_code == 200
    assert stylize(two, "style=ink").status_code == 404


def test_previews_and_cards_are_per_model(two):
    a = two.get("/styles/candy/preview.png")
    b = two.get("/styles/candy/preview.png?model=fast")
    assert a.status_code == b.status_code == 200
    assert a.headers["x-stylebox-model"] == "stylebox-tiny@test"
    assert b.headers["x-stylebox-model"] == "stylebox-tiny-fast@test"
    assert a.content != b.content  # the cache keeps one set per engine, not one per name
    assert two.get("/styles/ink/preview.png?model=fast").status_code == 200
    assert two.get("/styles/ink/preview.png").status_code == 404
    assert two.get("/model").json()["name"] == "stylebox-tiny"
    card = two.get("/model?model=fast").json()
    assert card["name"] == "stylebox-tiny-fast" and card["alpha"] == 0.125


def test_models_lists_every_served_model(two, tiny_onnx, fast_onnx):
    body = two.get("/models").json()
    assert [m["name"] for m in body["models"]] == ["default", "fast"]
    default, fast = body["models"]
    assert default["file"] == tiny_onnx.name and fast["file"] == fast_onnx.name
    assert (default["n_styles"], default["styles"]) == (3, ["candy", "mosaic", "udnie"])
    assert (fast["n_styles"], fast["styles"], fast["alpha"]) == (2, ["ink", "candy"], 0.125)
    assert fast["model"] == "stylebox-tiny-fast@test"
    assert fast["architecture"]["n_residual"] == 2
    assert default["runtime"] == {"engine": "onnxruntime", "precision": "f32"}
    assert default["ms_640x480"] > 0 and fast["ms_640x480"] > 0  # timed at start-up
    assert (default["default"], fast["default"]) == (True, False)
    # auto: whichever choose_live picks from the measured times, and only that one is live
    live = choose_live("auto", {m["name"]: m["ms_640x480"] for m in body["models"]})
    assert body["default"] == "default" and body["live"] == live
    assert [m["name"] for m in body["models"] if m["live"]] == [live]


def test_one_model_is_listed_and_timed_on_the_first_ask(tiny_onnx, engine):
    with make_client(engine, tiny_onnx) as c:
        body = c.get("/models").json()
    (only,) = body["models"]
    assert only["name"] == "default" and only["default"] and only["live"]
    assert only["ms_640x480"] > 0 and body["live"] == "default"


def test_the_contract_declares_the_model_parameter_and_header(two):
    schema = two.get("/openapi.json").json()
    for path, method in (("/stylize", "post"), ("/styles", "get"), ("/model", "get"),
                         ("/videos", "post"), ("/styles/{name}/preview.png", "get"),
                         ("/admin/reload", "post")):
        op = schema["paths"][path][method]
        (param,) = [p for p in op["parameters"] if p["name"] == "model"]
        assert param["schema"]["enum"] == ["default", "fast"], path
        assert "404" in op["responses"], path
    ok = schema["paths"]["/stylize"]["post"]["responses"]["200"]
    assert ok["headers"]["X-Stylebox-Model-Name"]["required"] is True
    assert "/models" in schema["paths"]
    assert "valid_models" in schema["components"]["schemas"]["Problem"]["properties"]


# -- live sessions -----------------------------------------------------------------------------

def test_live_hello_names_the_model_and_lists_them(two):
    with two.websocket_connect("/live?model=fast", subprotocols=PROTOCOLS) as ws:
        hello = ws.receive_json()
    assert hello["model_name"] == "fast" and hello["models"] == ["default", "fast"]
    assert hello["model"] == "stylebox-tiny-fast@test" and hello["styles"] == ["ink", "candy"]
    with two.websocket_connect("/live", subprotocols=PROTOCOLS) as ws:
        hello = ws.receive_json()
    assert hello["model_name"] == state_of(two.app).live_model
    r = refusal(two, "/live?model=nope")
    assert r.status_code == 404 and r.json()["valid_models"] == ["default", "fast"]


def test_live_model_setting_names_the_sessions_model(tiny_onnx, fast_onnx, engine):
    with make_client(engine, tiny_onnx, extra_models=f"fast={fast_onnx}",
                     live_model="fast") as c:
        with c.websocket_connect("/live", subprotocols=PROTOCOLS) as ws:
            assert ws.receive_json()["model_name"] == "fast"
        assert c.get("/models").json()["live"] == "fast"


@pytest.mark.parametrize("timings,chosen", [
    ({"default": 40.0, "fast": 20.0}, "default"),  # 25 FPS: the default holds 15 FPS
    ({"default": 1000 / 15, "fast": 20.0}, "default"),  # exactly 15 FPS still holds
    ({"default": 70.0, "fast": 30.0, "tiny": 25.0}, "tiny"),  # too slow: the fastest
    ({"default": 70.0, "fast": 90.0}, "default"),  # too slow, but still the fastest
    ({"default": 70.0, "fast": None}, "default"),  # nothing else timed
    ({}, "default"),
])
def test_live_model_auto_keeps_the_default_at_15_fps_else_the_fastest(timings, chosen):
    assert choose_live("auto", timings) == chosen


def test_live_model_by_name_is_that_model():
    assert choose_live("fast", {"default": 10.0, "fast": 500.0}) == "fast"


# -- video jobs --------------------------------------------------------------------------------

def _wait(c, loc: str) -> dict:
    deadline = time.monotonic() + 60
    while (s := c.get(loc).json())["state"] not in ("done", "failed", "cancelled"):
        assert time.monotonic() < deadline, s
        time.sleep(0.05)
    return s


def test_a_video_job_runs_on_the_model_it_names(tiny_onnx, fast_onnx, tmp_path):
    clip = make_clip(tmp_path / "c.mp4", 64, 48, 6, 10).read_bytes()
    with make_client(None, tiny_onnx, extra_models=f"fast={fast_onnx}", engine="onnxruntime",
                     video_dir=str(tmp_path / "jobs")) as c:
        r = c.post("/videos?style=ink&model=fast", content=clip,
                   headers={"Content-Type": "video/mp4"})
        assert r.status_code == 202, r.text
        assert r.json()["model"] == "fast"
        done = _wait(c, r.headers["location"])
        assert done["state"] == "done" and done["model"] == "fast", done
        plain = c.post("/videos?style=candy", content=clip,
                       headers={"Content-Type": "video/mp4"})
        assert plain.json()["model"] == "default"
        # ink is fast's alone: the default model refuses it before the upload is read
        r = c.post("/videos?style=ink", content=clip, headers={"Content-Type": "video/mp4"})
        assert r.status_code == 404 and r.json()["valid_styles"] == ["candy", "mosaic", "udnie"]
        _wait(c, plain.headers["location"])


def test_a_job_for_a_model_no_longer_served_fails_clearly(tiny_onnx, engine, tmp_path):
    """A dead replica's queued job, written for `fast`, taken over by a server without it."""
    clip = make_clip(tmp_path / "c.mp4", 64, 48, 6, 10)
    store = JobStore(tmp_path / "jobs", 60, 0.2)
    job = store.new_id()
    store.create(job)
    shutil.copy(clip, store.input(job))
    info = probe(store.input(job))
    old = time.time() - 10 * STALE_BEATS * 0.2  # its replica's heartbeat: long stale
    store.write(job, JobStatus(
        id=job, state="queued", frames_total=info.frames, style="candy", width=64,
        height=48, created=old, heartbeat=old, owner="gone:1:x",
        request=JobRequest(StyleMix((("candy", 1.0),)), Controls(), True, info, "fast")))
    with make_client(engine, tiny_onnx, video_dir=str(tmp_path / "jobs"),
                     video_heartbeat_s=0.2) as c:
        s = _wait(c, f"/videos/{job}")
    assert s["state"] == "failed" and s["model"] == "fast", s
    assert s["error"]["type"] == "urn:stylebox:problem:unknown-model"
    assert "'fast'" in s["error"]["detail"] and "submit the clip again" in s["error"]["detail"]
    assert s["error"]["valid_models"] == ["default"]


# -- reloads -------------------------------------------------------------------------------------

def test_admin_reload_takes_the_model_by_name(two):
    state = state_of(two.app)
    before = state.engines["fast"], state.engines["default"]
    r = two.post("/admin/reload?model=fast")
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "fast" and r.json()["model"]["name"] == "stylebox-tiny-fast"
    assert state.engines["fast"] is not before[0] and state.engines["default"] is before[1]
    assert state.engines["fast"].live_ms is not None  # timed as at start-up


def test_a_replaced_extra_model_file_is_reloaded(tiny_onnx, fast_onnx, engine, tmp_path):
    path = tmp_path / "fast.onnx"
    shutil.copy(fast_onnx, path)
    with make_client(engine, tiny_onnx, extra_models=f"fast={path}", model_watch_s=0.1) as c:
        state = state_of(c.app)
        assert state.engines["fast"].card.name == "stylebox-tiny-fast"
        shutil.copy(tiny_onnx, tmp_path / "new.onnx")
        os.replace(tmp_path / "new.onnx", path)  # as a worker or an operator swaps a file
        deadline = time.monotonic() + 30
        while state.engines["fast"].card.name != "stylebox-tiny":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert c.get("/styles?model=fast").json()["styles"][0]["name"] == "candy"
        assert state.engines["default"] is engine  # the default one stays as it was


# -- start-up errors -------------------------------------------------------------------------

@pytest.mark.parametrize("value,words", [
    ("Fast=a.onnx", "lowercase"), ("default=a.onnx", "MODEL_PATH's model"),
    ("fast=a.onnx,fast=b.onnx", "given twice"), ("fast", "NAME=PATH"),
    ("fast=", "NAME=PATH"), ("-x=a.onnx", "starting with a letter or digit"),
    ("a" * 33 + "=a.onnx", "at most 32"),
])
def test_bad_extra_models_stop_start_up(monkeypatch, value, words):
    monkeypatch.setenv("STYLEBOX_EXTRA_MODELS", value)
    with pytest.raises(ValidationError, match=words):
        Settings()


def test_extra_models_as_json(monkeypatch):
    monkeypatch.setenv("STYLEBOX_EXTRA_MODELS", '{"fast": "a.onnx", "hq": "b.onnx"}')
    assert Settings().model_paths == {"default": "models/stylebox-a0.25.onnx",
                                      "fast": "a.onnx", "hq": "b.onnx"}
    monkeypatch.setenv("STYLEBOX_EXTRA_MODELS", '["fast=a.onnx"]')
    assert Settings().extra_models == ["fast=a.onnx"]


def test_a_live_model_that_is_not_served_stops_start_up():
    with pytest.raises(ValidationError, match="not a served model"):
        Settings(live_model="fast")
    assert Settings(extra_models="fast=a.onnx", live_model="FAST").live_model == "fast"


def test_a_missing_extra_model_file_stops_the_app(tiny_onnx, engine, tmp_path):
    missing = tmp_path / "none.onnx"
    with pytest.raises(ModelLoadError, match="extra model 'fast'.*does not exist"), \
            make_client(engine, tiny_onnx, extra_models=f"fast={missing}"):
        pass


def test_serve_reports_a_bad_extra_model_in_one_line(tiny_onnx, tmp_path, capsys, monkeypatch):
    missing = tmp_path / "none.onnx"
    monkeypatch.setenv("STYLEBOX_EXTRA_MODELS", f"fast={missing}")
    monkeypatch.setenv("STYLEBOX_ENGINE", "onnxruntime")
    assert main(["serve", "--model", str(tiny_onnx), "--port", "0"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "extra model 'fast'" in err and str(missing) in err
    monkeypatch.setenv("STYLEBOX_EXTRA_MODELS", "default=x.onnx")
    assert main(["serve", "--model", str(tiny_onnx), "--port", "0"]) == 2
    assert "MODEL_PATH's model" in capsys.readouterr().err
