"""POST/GET/DELETE /videos: the job lifecycle, cancel, expiry, a stale heartbeat, the full
queue, every bound, bad uploads, the API key; in-process (TestClient, lifespan running,
jobs in tmp_path). Two real replicas sharing one folder: test_video_replicas.py."""

from __future__ import annotations

import json
import time
from pathlib import Path

import av
import pytest

from stylebox.videobench import make_clip
from tests.conftest import make_client, png
from tests.service.test_video import _audio_only, read_back

KEYS = {"id", "state", "frames_done", "frames_total", "progress", "fps", "eta_s", "error",
        "result", "style", "width", "height", "duration_s", "created_at", "expires_at"}
MP4 = {"Content-Type": "video/mp4"}


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, bytes]:
    d = tmp_path_factory.mktemp("clips")
    return {"short": make_clip(d / "short.mp4", 64, 48, 12, 10, audio="aac").read_bytes(),
            # ~10 s of work for the tiny model on 2 cores: long enough to catch it running
            "long": make_clip(d / "long.mp4", 320, 240, 900, 30).read_bytes()}


def wait_for(c, loc: str, states: set[str], timeout_s: float = 60) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        s = c.get(loc).json()
        if s["state"] in states:
            return s
        assert time.monotonic() < deadline, s
        time.sleep(0.05)


def test_submit_poll_download(tiny_onnx, engine, tmp_path, clips):
    with make_client(engine, tiny_onnx, video_dir=str(tmp_path)) as c:
        r = c.post("/videos?style=candy:0.5,mosaic:0.5&max_side=40&strength=0.9",
                   content=clips["short"], headers=MP4)
        assert r.status_code == 202, r.text
        loc = r.headers["location"]
        first = r.json()
        assert set(first) == KEYS and loc == f"/videos/{first['id']}"
        assert len(first["id"]) >= 22 and first["state"] == "queued"
        assert (first["style"], first["width"], first["height"]) == (
            "candy:0.5,mosaic:0.5", 40, 30)
        assert first["frames_total"] == 12 and first["duration_s"] == pytest.approx(1.2)
        assert first["result"] is None and first["expires_at"] is None
        done = wait_for(c, loc, {"done", "failed"})
        assert done["state"] == "done", done
        assert done["frames_done"] == done["frames_total"] == 12 and done["progress"] == 1
        assert done["result"] == loc + "/result" and done["expires_at"] and done["fps"] > 0
        r = c.get(done["result"])
        assert r.status_code == 200 and r.headers["content-type"] == "video/mp4"
        out = tmp_path / "got.mp4"
        out.write_bytes(r.content)
        _, frames, facts = read_back(out)
        assert len(frames) == 12 and frames[0].shape == (30, 40, 3) and facts["audio"] == "aac"
        part = c.get(done["result"], headers={"Range": "bytes=10-109"})
        assert part.status_code == 206 and part.content == r.content[10:110]
        assert not (tmp_path / done["id"] / "input").exists()  # the upload is not kept
        # multipart, field `video`
        r = c.post("/videos?style=udnie&stabilize=false",
                   files={"video": ("clip.mp4", clips["short"], "video/mp4")})
        assert r.status_code == 202, r.text
        assert wait_for(c, r.headers["location"], {"done", "failed"})["state"] == "done"
        # a finished job deleted: 204, then gone
        assert c.delete(loc).status_code == 204
        assert c.get(loc).status_code == 404 and c.get(loc + "/result").status_code == 404


def test_cancel_a_running_job(tiny_onnx, engine, tmp_path, clips):
    with make_client(engine, tiny_onnx, video_dir=str(tmp_path)) as c:
        r = c.post("/videos?style=candy", content=clips["long"], headers=MP4)
        loc, job = r.headers["location"], r.json()["id"]
        running = wait_for(c, loc, {"running", "done"})
        while c.get(loc).json()["frames_done"] < 2:
            time.sleep(0.02)
        assert running["state"] == "running"
        assert c.get(loc + "/result").status_code == 409  # not done yet
        assert c.delete(loc).status_code == 204
        s = c.get(loc).json()
        assert s["state"] == "cancelled" and s["result"] is None
        r = c.get(loc + "/result")
        assert r.status_code == 409 and r.headers["content-type"] == "application/problem+json"
        time.sleep(0.5)  # the frame loop has stopped and removed its partial file
        files = {p.name for p in (tmp_path / job).iterdir()}
        assert files <= {"status.json", "cancel"}, files
        frames = c.get(loc).json()["frames_done"]
        time.sleep(0.3)
        assert c.get(loc).json()["frames_done"] == frames < 900


def test_full_queue_is_503_with_retry_after(tiny_onnx, engine, tmp_path, clips):
    with make_client(engine, tiny_onnx, video_dir=str(tmp_path), video_workers=1,
                     video_max_queue=1) as c:
        a = c.post("/videos?style=candy", content=clips["long"], headers=MP4)
        b = c.post("/videos?style=candy", content=clips["short"], headers=MP4)
        assert a.status_code == b.status_code == 202
        assert c.get(b.headers["location"]).json()["state"] == "queued"
        assert c.get(b.headers["location"] + "/result").status_code == 409
        full = c.post("/videos?style=candy", content=clips["short"], headers=MP4)
        assert full.status_code == 503 and int(full.headers["retry-after"]) >= 1
        assert full.json()["type"] == "urn:stylebox:problem:queue-full"
        assert len(list(tmp_path.iterdir())) == 2  # the refused upload left nothing
        c.delete(a.headers["location"])  # a place frees up: the queued one runs
        assert wait_for(c, b.headers["location"], {"done", "failed"})["state"] == "done"
        assert c.post("/videos?style=candy", content=clips["short"],
                      headers=MP4).status_code == 202


def test_expired_jobs_are_gone_and_swept(tiny_onnx, engine, tmp_path, clips):
    with make_client(engine, tiny_onnx, video_dir=str(tmp_path), video_result_ttl_s=1) as c:
        r = c.post("/videos?style=candy", content=clips["short"], headers=MP4)
        loc, job = r.headers["location"], r.json()["id"]
        assert wait_for(c, loc, {"done"})["expires_at"]
        time.sleep(1.2)
        assert c.get(loc).status_code == 404 and c.get(loc + "/result").status_code == 404
        deadline = time.monotonic() + 10  # the sweep runs every ttl/4, at least every 1 s
        while (tmp_path / job).exists():
            assert time.monotonic() < deadline
            time.sleep(0.1)


def test_a_stale_heartbeat_reads_as_interrupted(tiny_onnx, engine, tmp_path):
    """A job whose replica died: its status says running, but nobody refreshes it."""
    job = "A" * 24
    (tmp_path / job).mkdir()
    (tmp_path / job / "input").write_bytes(b"x")
    old = time.time() - 600
    status = {"id": job, "state": "running", "frames_done": 5, "frames_total": 50,
              "fps": 3.0, "eta_s": 15.0, "error": None, "style": "candy", "width": 64,
              "height": 48, "duration_s": 2.0, "created": old, "heartbeat": old,
              "expires": None, "owner": "gone:1:x"}
    (tmp_path / job / "status.json").write_text(json.dumps(status))
    with make_client(engine, tiny_onnx, video_dir=str(tmp_path), video_heartbeat_s=1) as c:
        s = c.get(f"/videos/{job}").json()
        assert s["state"] == "failed" and s["eta_s"] is None and s["frames_done"] == 5
        assert s["error"]["type"] == "urn:stylebox:problem:job-interrupted"
        assert c.get(f"/videos/{job}/result").status_code == 409
        c.app.state.videos.store.sweep()
        assert json.loads((tmp_path / job / "status.json").read_text())["state"] == "failed"
        assert not (tmp_path / job / "input").exists()


def test_every_bound(tiny_onnx, engine, tmp_path, clips):
    short = clips["short"]  # 12 frames, 1.2 s, 64x48, ~30 kB
    cases = [({"video_max_upload_bytes": len(short) - 1}, "payload-too-large", ""),
             ({"video_max_duration_s": 1.0}, "video-too-large", ""),
             ({"video_max_frames": 11}, "video-too-large", ""),
             ({"video_max_pixels": 64 * 48 - 1}, "video-too-large", ""),
             ({"max_pixels": 64 * 48 - 1}, "image-too-large", "")]
    for settings, slug, query in cases:
        with make_client(engine, tiny_onnx, video_dir=str(tmp_path), **settings) as c:
            r = c.post(f"/videos?style=candy{query}", content=short, headers=MP4)
            assert r.status_code == 413, (settings, r.text)
            assert r.json()["type"] == f"urn:stylebox:problem:{slug}", settings
            if "video_max_pixels" in settings:  # max_side brings the frames inside
                ok = c.post("/videos?style=candy&max_side=32", content=short, headers=MP4)
                assert ok.status_code == 202 and ok.json()["width"] == 32
                wait_for(c, ok.headers["location"], {"done"})
    with make_client(engine, tiny_onnx, video_dir=str(tmp_path)) as c:
        for query, status in [("style=nope", 404), ("", 422), ("style=candy&strength=2", 422),
                              ("style=candy&max_side=8", 422)]:
            r = c.post(f"/videos?{query}", content=short, headers=MP4)
            assert r.status_code == status, (query, r.text)


def test_bad_uploads_are_4xx_problems(tiny_onnx, engine, tmp_path, clips):
    good = make_clip(tmp_path / "g.mp4", 32, 32, 10, 10).read_bytes()  # index at the end
    audio = _audio_only(tmp_path / "a.m4a").read_bytes()
    jobs = tmp_path / "jobs"
    cases = [(good[: len(good) // 2], MP4, 422, "corrupt-video"),
             (b"\x00garbage" * 500, MP4, 415, "unsupported-video"),
             (png(32, 32, seed=2), {"Content-Type": "application/octet-stream"}, 415,
              "unsupported-video"),
             (audio, {"Content-Type": "video/mp4"}, 415, "unsupported-video"),
             (b"", MP4, 422, "missing-video"),
             (good, {"Content-Type": "text/plain"}, 415, "unsupported-video")]
    with make_client(engine, tiny_onnx, video_dir=str(jobs)) as c:
        for body, headers, status, slug in cases:
            r = c.post("/videos?style=candy", content=body, headers=headers)
            assert r.status_code == status, (slug, r.text)
            assert r.headers["content-type"] == "application/problem+json"
            assert r.json()["type"] == f"urn:stylebox:problem:{slug}"
        r = c.post("/videos?style=candy", files={"clip": ("c.mp4", good, "video/mp4")})
        assert r.status_code == 422 and "'clip'" in r.json()["detail"]
        r = c.post("/videos?style=candy", content=b"--x\r\nbroken",
                   headers={"Content-Type": "multipart/form-data; boundary=x"})
        assert r.status_code in (400, 422), r.text
        assert list(jobs.iterdir()) == []  # nothing refused is kept
        assert c.get("/videos/../../etc").status_code == 404
        assert c.get("/videos/" + "%2e" * 20).status_code == 404


def test_api_key_guards_videos(tiny_onnx, engine, tmp_path, clips):
    with make_client(engine, tiny_onnx, video_dir=str(tmp_path), api_key="k") as c:
        assert c.post("/videos?style=candy", content=clips["short"],
                      headers=MP4).status_code == 401
        r = c.post("/videos?style=candy", content=clips["short"],
                   headers={**MP4, "Authorization": "Bearer k"})
        assert r.status_code == 202
        assert c.get(r.headers["location"]).status_code == 401
        assert c.delete(r.headers["location"]).status_code == 401
        headers = {"X-API-Key": "k"}
        deadline = time.monotonic() + 60
        while c.get(r.headers["location"], headers=headers).json()["state"] != "done":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert c.get(r.headers["location"] + "/result", headers=headers).status_code == 200


def test_result_plays_in_order(tmp_path, tiny_onnx, engine, clips):
    """The downloaded MP4 has its index first (faststart) and every frame decodes."""
    with make_client(engine, tiny_onnx, video_dir=str(tmp_path)) as c:
        r = c.post("/videos?style=mosaic", content=clips["short"], headers=MP4)
        wait_for(c, r.headers["location"], {"done"})
        data = c.get(r.headers["location"] + "/result").content
    assert data.index(b"moov") < data.index(b"mdat")
    p = Path(tmp_path / "r.mp4")
    p.write_bytes(data)
    with av.open(str(p)) as f:
        assert sum(1 for _ in f.decode(video=0)) == 12


def test_a_stalled_upload_is_408_and_frees_its_place(tiny_onnx, engine, tmp_path, clips):
    def trickle():
        yield clips["short"][:1000]
        time.sleep(1.5)  # past the 0.5 s the upload may take
        yield clips["short"][1000:]

    with make_client(engine, tiny_onnx, video_dir=str(tmp_path), video_upload_timeout_s=0.5,
                     video_workers=1, video_max_queue=0) as c:
        r = c.post("/videos?style=candy", content=trickle(), headers=MP4)
        assert r.status_code == 408, r.text
        assert r.json()["type"] == "urn:stylebox:problem:request-timeout"
        assert list(tmp_path.iterdir()) == []
        assert c.post("/videos?style=candy", content=clips["short"],
                      headers=MP4).status_code == 202  # its place was given back
