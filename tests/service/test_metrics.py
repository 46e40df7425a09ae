"""GET /metrics (Prometheus text format) and the structured one-line-per-request access log."""

from __future__ import annotations

import json
import logging
import threading
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from stylebox.service.http.middleware import JsonFormatter
from stylebox.service.state import state_of
from tests.conftest import make_client, png


@pytest.fixture()
def client(tiny_onnx, engine):
    """A fresh app (its own metrics registry) for each test: the counts start at zero."""
    with make_client(engine, tiny_onnx) as c:
        yield c


def samples(client) -> dict[tuple[str, tuple], float]:
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def stylize(client, style="candy", data=None):
    return client.post("/stylize", params={"style": style},
                       files={"image": ("x.png", png(10, 12) if data is None else data)})


def test_requests_latency_inference_and_rejections_are_counted(client):
    assert stylize(client).status_code == 200
    assert stylize(client, "candy:0.5,udnie:0.5").status_code == 200
    assert stylize(client, "vangogh").status_code == 404
    assert stylize(client, "candy:-1").status_code == 422
    assert stylize(client, data=b"plain text").status_code == 415
    assert client.get("/healthz").status_code == 200
    m = samples(client)
    req = "stylebox_http_requests_total"
    assert m[(req, (("method", "POST"), ("route", "/stylize"), ("status", "200")))] == 2
    assert m[(req, (("method", "POST"), ("route", "/stylize"), ("status", "404")))] == 1
    assert m[(req, (("method", "GET"), ("route", "/healthz"), ("status", "200")))] == 1
    rej = "stylebox_rejections_total"
    assert m[(rej, (("reason", "unknown-style"),))] == 1
    assert m[(rej, (("reason", "invalid-style-spec"),))] == 1
    assert m[(rej, (("reason", "unsupported-media-type"),))] == 1
    assert m[("stylebox_inference_duration_seconds_count", ())] == 2
    assert 0 < m[("stylebox_inference_duration_seconds_sum", ())] < 10
    hist = "stylebox_http_request_duration_seconds_count"
    assert m[(hist, (("method", "POST"), ("route", "/stylize")))] == 5
    assert m[("stylebox_http_requests_in_flight", ())] == 1  # the scrape itself
    assert m[("stylebox_admitted_requests", ())] == 0
    assert m[("stylebox_http_request_bytes_total", (("route", "/stylize"),))] > 5 * 100
    assert m[("stylebox_http_response_bytes_total", (("route", "/stylize"),))] > 0


def test_unknown_paths_share_one_label(client):
    """A scanner's random paths must not create a series each."""
    for i in range(30):
        assert client.get(f"/probe-{i}/../wp-admin.php").status_code == 404
    client.request("FOO", "/healthz")
    m = samples(client)
    routes = {dict(labels).get("route") for (name, labels) in m
              if name == "stylebox_http_requests_total"}
    assert not any(r and "probe" in r for r in routes)
    key = ("stylebox_http_requests_total",
           (("method", "GET"), ("route", "unmatched"), ("status", "404")))
    assert m[key] == 30
    assert m[("stylebox_rejections_total", (("reason", "not-found"),))] == 30
    methods = {dict(labels).get("method") for (name, labels) in m
               if name == "stylebox_http_requests_total"}
    assert "FOO" not in methods and "other" in methods


def test_access_log_is_one_line_with_fields_and_no_image_data(client, caplog):
    caplog.set_level("INFO", logger="stylebox.access")
    data = png(30, 40)
    stylize(client, "mosaic", data)
    stylize(client, "nope")
    client.get("/healthz")
    records = [r for r in caplog.records if r.name == "stylebox.access"]
    assert len(records) == 3
    ok, bad, health = (r.access for r in records)
    assert ok["method"] == "POST" and ok["route"] == "/stylize" and ok["status"] == 200
    assert ok["style"] == "mosaic" and ok["bytes_in"] > len(data) and ok["bytes_out"] > 100
    assert ok["ms"] > 0 and "reason" not in ok
    assert bad["status"] == 404 and bad["reason"] == "unknown-style" and bad["style"] == "'nope'"
    assert health["route"] == "/healthz" and health["bytes_in"] == 0
    text = records[0].getMessage()
    assert "\n" not in text and len(text) < 200
    assert text.startswith("POST /stylize 200 ") and " in=" in text and " out=" in text
    for r in records:  # never the payload: no PNG signature, no long byte dumps
        assert "PNG" not in r.getMessage() and "\\x" not in r.getMessage()


def test_json_log_format(client, caplog):
    caplog.set_level("INFO", logger="stylebox.access")
    stylize(client, "udnie")
    record = next(r for r in caplog.records if r.name == "stylebox.access")
    line = JsonFormatter().format(record)
    assert "\n" not in line
    obj = json.loads(line)
    assert obj["logger"] == "stylebox.access" and obj["level"] == "info"
    assert obj["route"] == "/stylize" and obj["status"] == 200 and obj["style"] == "udnie"
    other = logging.LogRecord("stylebox.service", logging.WARNING, __file__, 1, "hi %s",
                              ("there",), None)
    assert json.loads(JsonFormatter().format(other))["msg"] == "hi there"


def test_metrics_registries_are_per_app(tiny_onnx, engine):
    with make_client(engine, tiny_onnx) as ca, make_client(engine, tiny_onnx) as cb:
        ca.get("/healthz")
        key = ("stylebox_http_requests_total",
               (("method", "GET"), ("route", "/healthz"), ("status", "200")))
        assert samples(ca)[key] == 1 and key not in samples(cb)


def test_video_jobs_and_live_series(tiny_onnx, engine, tmp_path, monkeypatch):
    """Video jobs by state (this server's queued and running), ended by outcome, frames
    stylized; the live series. Every outcome is there from the start, at 0."""
    from stylebox.service import jobs
    from stylebox.service.http.errors import CorruptVideoError
    from stylebox.videobench import make_clip

    clip = make_clip(tmp_path / "c.mp4", 32, 24, 6, 10).read_bytes()
    with make_client(engine, tiny_onnx, video_dir=str(tmp_path / "jobs"), video_workers=1,
                     video_max_queue=2) as c:
        m = samples(c)
        for outcome in ("done", "failed", "cancelled"):
            assert m[("stylebox_video_jobs_finished_total", (("outcome", outcome),))] == 0
        for state in ("queued", "running"):
            assert m[("stylebox_video_jobs", (("state", state),))] == 0
        assert m[("stylebox_video_frames_total", ())] == 0
        assert m[("stylebox_live_sessions", ())] == 0
        for outcome in ("stylized", "dropped", "error"):
            assert m[("stylebox_live_frames_total", (("outcome", outcome),))] == 0

        def submit() -> str:
            r = c.post("/videos?style=candy", content=clip,
                       headers={"Content-Type": "video/mp4"})
            assert r.status_code == 202, r.text
            return r.headers["location"]

        def ended(loc: str) -> str:
            for _ in range(600):
                state = c.get(loc).json()["state"]
                if state in ("done", "failed", "cancelled"):
                    return state
                time.sleep(0.05)
            raise AssertionError(loc)

        assert ended(submit()) == "done"
        m = samples(c)
        assert m[("stylebox_video_jobs_finished_total", (("outcome", "done"),))] == 1
        assert m[("stylebox_video_frames_total", ())] == 6
        # a job held running (its frames counted as they go) and one queued behind it
        gate = threading.Event()

        def held(src, dst, engine, weights, *, progress, cancelled, **_):
            progress(1)
            progress(2)
            while not cancelled():
                gate.set()
                time.sleep(0.01)
            raise jobs.Cancelled

        monkeypatch.setattr(jobs, "stylize_video", held)
        running, queued = submit(), submit()
        assert gate.wait(30)
        m = samples(c)
        assert m[("stylebox_video_jobs", (("state", "running"),))] == 1
        assert m[("stylebox_video_jobs", (("state", "queued"),))] == 1
        assert m[("stylebox_video_frames_total", ())] == 8
        assert c.post(queued + "/cancel").json()["state"] == "cancelled"
        assert c.delete(running).status_code == 204  # deleted: counted as cancelled
        for _ in range(600):
            if not state_of(c.app).videos.local:
                break
            time.sleep(0.05)

        def corrupt(*args, **kwargs):
            raise CorruptVideoError("damaged past the first frames")

        monkeypatch.setattr(jobs, "stylize_video", corrupt)
        assert ended(submit()) == "failed"
        m = samples(c)
        assert m[("stylebox_video_jobs_finished_total", (("outcome", "cancelled"),))] == 2
        assert m[("stylebox_video_jobs_finished_total", (("outcome", "failed"),))] == 1
        assert m[("stylebox_video_jobs_finished_total", (("outcome", "done"),))] == 1
        for state in ("queued", "running"):
            assert m[("stylebox_video_jobs", (("state", state),))] == 0
