"""Trainer jobs end to end: the service takes POST /styles, DELETE /styles/{name} and
POST /optimize, a real `stylebox worker` process runs them on a tiny model, and the server
reloads the model the worker swapped in. Refusals, cancel, a killed worker, and video jobs
queued across a reload."""

from __future__ import annotations

import functools
import io
import os
import signal
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from stylebox.model import lineage
from stylebox.model.checkpoint import load_checkpoint
from stylebox.model.edit import is_style_table
from stylebox.videobench import make_clip
from tests import trainer_fixtures
from tests.conftest import encode, make_client, noise, png
from tests.trainer_fixtures import fresh_model, make_editable_model, painting_png, run_worker

KEY = "s3cret-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def editable(tmp_path_factory) -> tuple[Path, Path]:
    """(model, data): the pristine tiny model; tests copy it (`fresh`) before editing it."""
    return make_editable_model(tmp_path_factory.mktemp("editable"))


def fresh(editable, tmp_path: Path) -> Path:
    """A copy of the editable model (and its checkpoint) that a test may change."""
    return fresh_model(editable[0], tmp_path)


def client(model: Path, jobs: Path, **settings):
    settings = {"api_key": KEY, "video_dir": str(jobs), "model_watch_s": 0.1,
                "video_heartbeat_s": 0.5, **settings}
    return make_client(None, model, **settings)


wait_job = functools.partial(trainer_fixtures.wait_job, headers=AUTH)


def wait_styles(c, count: int, timeout_s: float = 20) -> list[str]:
    deadline = time.monotonic() + timeout_s
    while True:
        names = [s["name"] for s in c.get("/styles", headers=AUTH).json()["styles"]]
        if len(names) == count:
            return names
        assert time.monotonic() < deadline, names
        time.sleep(0.05)


def post_painting(c, path: Path, name: str, headers=AUTH, **fields):
    return c.post("/styles", headers=headers, data={"name": name, **fields},
                  files={"painting": ("painting.png", path.read_bytes(), "image/png")})


def test_add_a_style_then_remove_it(editable, tmp_path):
    model, data = fresh(editable, tmp_path), editable[1]
    jobs = tmp_path / "jobs"
    base_ckpt = lineage.checkpoint_of(model)
    before, _, _ = load_checkpoint(base_ckpt)
    painting = painting_png(tmp_path / "p.png")
    with client(model, jobs) as c, run_worker(model, jobs, data):
        assert c.get("/jobs", headers=AUTH).json()["workers"] == 1
        r = post_painting(c, painting, "bands", title="Bands (mine)")
        assert r.status_code == 202, r.text
        loc = r.headers["location"]
        assert loc == f"/jobs/{r.json()['id']}" and r.json()["state"] == "queued"
        seen: list[dict] = []
        done = wait_job(c, loc, {"done", "failed", "cancelled"}, seen=seen)
        assert done["state"] == "done", done
        assert done["kind"] == "add-style" and done["style"] == "bands"
        assert done["step"] == done["steps"] > 0 and done["progress"] == 1
        assert any(s["state"] == "running" for s in seen)
        assert set(done["losses"]) >= {"style", "content"}
        preview = c.get(done["preview"], headers=AUTH)
        assert preview.status_code == 200 and preview.content[:2] == b"\xff\xd8"
        # The server reloads the swapped model by itself, the new style last, titled.
        assert wait_styles(c, 3) == ["stripes", "checker", "bands"]
        style = c.get("/styles", headers=AUTH).json()["styles"][2]
        assert style["title"] == "Bands (mine)"
        assert c.get("/model", headers=AUTH).json()["version"].endswith("+1")
        assert done["model"] == "tiny@" + c.get("/model", headers=AUTH).json()["version"]
        r = c.post("/stylize?style=bands", headers=AUTH,
                   files={"image": ("a.png", encode(noise(24, 32)), "image/png")})
        assert r.status_code == 200
        # Every other row and every convolution stayed bit-identical; the card says where
        # the new checkpoint is, and the painting was kept beside the model.
        after, card, _ = load_checkpoint(lineage.checkpoint_of(model))
        old = dict(before.named_parameters())
        for name, p in after.named_parameters():
            want = old[name]
            assert torch.equal(p[:2] if is_style_table(name) else p, want), name
        assert card.training["style_edits"][-1]["via"] == "upload"
        assert list((model.parent / "paintings").glob("bands.*"))
        assert base_ckpt.is_file()  # the old checkpoint is never overwritten
        assert c.get(done["preview"].replace("preview", "result"), headers=AUTH
                     ).status_code == 409  # a style edit has no image result

        # Only styles added from an upload can be removed here.
        r = c.delete("/styles/stripes", headers=AUTH)
        assert r.status_code == 409 and "upload" in r.json()["detail"]
        r = c.delete("/styles/bands", headers=AUTH)
        assert r.status_code == 202, r.text
        gone = wait_job(c, r.headers["location"], {"done", "failed", "cancelled"})
        assert gone["state"] == "done", gone
        assert wait_styles(c, 2) == ["stripes", "checker"]
        assert not list((model.parent / "paintings").glob("bands.*"))


def test_refusals(editable, tmp_path):
    model, data = fresh(editable, tmp_path), editable[1]
    jobs = tmp_path / "jobs"
    painting = painting_png(tmp_path / "p.png")
    with client(model, jobs) as c:
        # No worker: refused at once, saying how to start one.
        r = post_painting(c, painting, "bands")
        assert r.status_code == 503 and r.json()["type"].endswith("no-worker")
        assert "stylebox worker" in r.json()["detail"] and "Retry-After" in r.headers
        assert r.headers["content-type"] == "application/problem+json"
        r = c.post("/optimize?style=stripes", headers=AUTH,
                   files={"photo": ("a.png", png(80, 80), "image/png")})
        assert r.status_code == 503 and "stylebox worker" in r.json()["detail"]
        assert c.get("/jobs", headers=AUTH).json()["workers"] == 0
        # No key, or a wrong one.
        assert post_painting(c, painting, "bands", headers={}).status_code == 401
        assert post_painting(c, painting, "bands",
                             headers={"Authorization": "Bearer nope"}).status_code == 401
        with run_worker(model, jobs, data):
            cases = {
                "BadName": (422, "lowercase"),
                "stripes": (409, "already exists"),
            }
            for name, (status, text) in cases.items():
                r = post_painting(c, painting, name)
                assert r.status_code == status and text in r.json()["detail"], r.text
            for body, status in ((b"not an image at all", 415),
                                 (png(80, 80)[:60], 422),  # truncated PNG
                                 (png(20, 20), 422)):  # too small to learn from
                r = c.post("/styles", headers=AUTH, data={"name": "x"},
                           files={"painting": ("p.png", body, "image/png")})
                assert r.status_code == status, (body[:10], r.text)
            r = c.post("/styles", headers=AUTH, data={"name": "x", "tittle": "typo"},
                       files={"painting": ("p.png", painting.read_bytes(), "image/png")})
            assert r.status_code == 422 and "tittle" in r.json()["detail"]
            r = c.post("/styles", headers=AUTH, data={"name": "x"})
            assert r.status_code in (415, 422)
            assert c.delete("/styles/nosuch", headers=AUTH).status_code == 404
            r = c.post("/optimize", headers=AUTH,
                       files={"photo": ("a.png", png(80, 80), "image/png")})
            assert r.status_code == 422 and "exactly one" in r.json()["detail"]
            r = c.post("/optimize?style=stripes&max_side=2048", headers=AUTH,
                       files={"photo": ("a.png", png(80, 80), "image/png")})
            assert r.status_code == 422 and "TRAINER_OPTIMIZE_MAX_SIDE" in r.json()["detail"]
            assert c.get("/jobs/" + "A" * 24, headers=AUTH).status_code == 404
            # Nothing was queued by any refusal.
            assert c.get("/jobs", headers=AUTH).json()["queued"] == 0
    # The style cap, and a full queue.
    with client(model, jobs, trainer_max_styles=2) as c, run_worker(model, jobs, data):
        r = post_painting(c, painting, "bands")
        assert r.status_code == 409 and "TRAINER_MAX_STYLES" in r.json()["detail"]
    with client(model, jobs, trainer_max_queue=0) as c, run_worker(model, jobs, data):
        r = post_painting(c, painting, "bands")
        assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1
        assert r.json()["type"].endswith("queue-full")
    # With no key configured, style edits stay closed (stylizing is open).
    with client(model, jobs, api_key="") as c:
        r = post_painting(c, painting, "bands", headers={})
        assert r.status_code == 403 and "API_KEY" in r.json()["detail"]


def test_a_model_without_lineage_is_refused(editable, tmp_path, tiny_onnx):
    jobs = tmp_path / "jobs"
    with client(tiny_onnx, jobs) as c:
        r = post_painting(c, painting_png(tmp_path / "p.png"), "bands")
        assert r.status_code == 409 and "stylebox export" in r.json()["detail"]


def test_cancel_keeps_the_model(editable, tmp_path):
    model, data = fresh(editable, tmp_path), editable[1]
    jobs = tmp_path / "jobs"
    digest = lineage.sha256_of(model)
    with client(model, jobs) as c, run_worker(model, jobs, data,
                                              trainer_style_seconds="120"):
        r = post_painting(c, painting_png(tmp_path / "p.png"), "bands")
        loc = r.headers["location"]
        running = wait_job(c, loc, {"running"})
        deadline = time.monotonic() + 60
        while c.get(loc, headers=AUTH).json()["step"] < 1:  # training, not loading
            assert time.monotonic() < deadline
            time.sleep(0.1)
        r = c.post(loc + "/cancel", headers=AUTH)
        assert r.status_code == 200 and r.json()["state"] == "cancelled"
        assert running["kind"] == "add-style"
        # The worker stops and takes the next job; the model never changed.
        time.sleep(1.5)
        assert c.get(loc, headers=AUTH).json()["state"] == "cancelled"
        assert c.get("/jobs", headers=AUTH).json()["running"] == 0
        assert lineage.sha256_of(model) == digest
        assert wait_styles(c, 2) == ["stripes", "checker"]
        assert c.delete(loc, headers=AUTH).status_code == 204
        assert c.get(loc, headers=AUTH).status_code == 404


def test_a_killed_worker_fails_the_job_and_keeps_the_model(editable, tmp_path):
    model, data = fresh(editable, tmp_path), editable[1]
    jobs = tmp_path / "jobs"
    digest = lineage.sha256_of(model)
    with client(model, jobs) as c:
        with run_worker(model, jobs, data, trainer_style_seconds="120") as proc:
            r = post_painting(c, painting_png(tmp_path / "p.png"), "bands")
            loc = r.headers["location"]
            wait_job(c, loc, {"running"})
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        failed = wait_job(c, loc, {"failed"}, timeout_s=30)  # 6 heartbeats of 0.5 s
        assert failed["error"]["type"].endswith("job-interrupted")
        assert "model is unchanged" in failed["error"]["detail"]
        assert lineage.sha256_of(model) == digest
        assert c.get("/jobs", headers=AUTH).json()["workers"] == 0


def test_optimize_a_photo(editable, tmp_path):
    model, data = fresh(editable, tmp_path), editable[1]
    jobs = tmp_path / "jobs"
    with client(model, jobs) as c, run_worker(model, jobs, data):
        r = c.post("/optimize?style=checker&max_side=64&iterations=6", headers=AUTH,
                   files={"photo": ("a.png", png(80, 96, seed=2), "image/png")})
        assert r.status_code == 202, r.text
        done = wait_job(c, r.headers["location"], {"done", "failed", "cancelled"})
        assert done["state"] == "done", done
        assert done["losses"]["style"] <= done["losses"]["start_style"]
        img = c.get(done["result"], headers=AUTH)
        assert img.status_code == 200 and img.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(img.content)).size == (64, 53)  # 96x80 at max_side 64


def test_video_jobs_queued_across_a_reload_are_not_failed(editable, tmp_path):
    """A swap of the model file (as a worker's style edit makes) while video jobs wait."""
    from stylebox.model.checkpoint import save_checkpoint
    from stylebox.model.edit import append_style
    from stylebox.model.export import export_onnx

    model = fresh(editable, tmp_path)
    jobs = tmp_path / "jobs"
    long = make_clip(tmp_path / "long.mp4", 320, 240, 600, 30).read_bytes()
    short = make_clip(tmp_path / "short.mp4", 64, 48, 12, 10).read_bytes()
    # The edited model, made beside the served one and renamed over it (as the worker does).
    gen, card, state = load_checkpoint(lineage.checkpoint_of(model))
    gen, card = append_style(gen, card, type(card.styles[0])("extra"))
    ckpt = model.parent / "checkpoints" / "extra.pt"
    save_checkpoint(ckpt, gen, card, config=state.get("config"))
    staged = model.parent / "staged.onnx"
    export_onnx(gen, card, staged, export_size=32, checkpoint=lineage.entry(ckpt, model))
    with client(model, jobs, video_workers=1) as c:
        locs = []
        for clip, style in ((long, "stripes"), (short, "checker"), (short, "stripes")):
            r = c.post(f"/videos?style={style}", headers=AUTH,
                       files={"video": ("c.mp4", clip, "video/mp4")})
            assert r.status_code == 202, r.text
            locs.append(r.headers["location"])
        assert c.get(locs[1], headers=AUTH).json()["state"] == "queued"
        os.replace(staged, model)
        assert wait_styles(c, 3) == ["stripes", "checker", "extra"]
        c.post(locs[0] + "/cancel", headers=AUTH)  # no need to wait for the long one
        for loc in locs[1:]:
            s = wait_job(c, loc, {"done", "failed", "cancelled"}, timeout_s=60)
            assert s["state"] == "done", s
