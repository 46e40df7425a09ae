"""POST/GET/DELETE /videos and POST /videos/{id}/cancel: the job lifecycle, cancel and
delete, downloads (Range, a delete racing one), expiry, a stale heartbeat, queued jobs taken
over from a dead replica or one shutting down (and claimed by exactly one), the full queue,
a model reload under queued jobs, every bound, bad uploads, the API key; in-process
(TestClient, lifespan running, jobs in tmp_path). Time passes on a fake clock (`Clock`)
where a test needs a TTL or a heartbeat behind it. Two real replicas sharing one folder:
test_video_replicas.py."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from pathlib import Path

import anyio
import av
import numpy as np
import pytest

from stylebox.service.backends.ort import OrtEngine
from stylebox.service.controls import Controls
from stylebox.service.jobs import (
    RELEASED,
    STALE_BEATS,
    TRANSITIONS,
    JobRequest,
    JobStatus,
    JobStore,
    VideoJobs,
    iso,
)
from stylebox.service.state import state_of
from stylebox.service.styles import StyleMix
from stylebox.service.video import probe, stylize_video
from stylebox.videobench import make_clip
from tests.conftest import make_client, make_tiny_card, make_tiny_generator, png
from tests.service.test_video import _audio_only, read_back

KEYS = {"id", "state", "frames_done", "frames_total", "progress", "fps", "eta_s", "error",
        "result", "style", "model", "width", "height", "duration_s", "created_at",
        "expires_at"}
MP4 = {"Content-Type": "video/mp4"}


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, bytes]:
    d = tmp_path_factory.mktemp("clips")
    return {"short": make_clip(d / "short.mp4", 64, 48, 12, 10, audio="aac").read_bytes(),
            # ~10 s of work for the tiny model on 2 cores: long enough to catch it running
            "long": make_clip(d / "long.mp4", 320, 240, 900, 30).read_bytes()}


class Clock:
    """A fake `time.time` for JobStore/VideoJobs: it moves only when `advance`d."""

    def __init__(self, t: float | None = None) -> None:
        self.t = time.time() if t is None else t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def clocked_client(engine, model_path, clock: Clock, **settings):
    """make_client whose video jobs read `clock` (its lifespan not yet started)."""
    c = make_client(engine, model_path, **settings)
    state_of(c.app).videos = VideoJobs(state_of(c.app).settings, clock)
    return c


def tick(c) -> None:
    """One heartbeat of the client's video jobs (save, take over, sweep when due), now."""
    c.portal.call(state_of(c.app).videos.tick)


def job_files(folder: Path) -> set[str]:
    """A job folder's files, less the claims (one per owner; they go with the folder)."""
    return {p.name for p in folder.iterdir() if not p.name.startswith("claim-")}


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
        size = len(r.content)
        assert r.headers["content-length"] == str(size) and r.headers["accept-ranges"] == "bytes"
        assert r.headers["content-disposition"] == (
            f'inline; filename="stylebox-{first["id"][:8]}.mp4"')
        assert r.headers["etag"] and r.headers["last-modified"]
        part = c.get(done["result"], headers={"Range": "bytes=10-109"})
        assert part.status_code == 206 and part.content == r.content[10:110]
        assert part.headers["content-range"] == f"bytes 10-109/{size}"
        assert part.headers["content-length"] == "100"
        tail = c.get(done["result"], headers={"Range": "bytes=-50"})
        assert tail.status_code == 206 and tail.content == r.content[-50:]
        both = c.get(done["result"], headers={"Range": "bytes=0-9,20-29"})
        assert both.status_code == 206 and both.headers["content-type"].startswith(
            "multipart/byteranges")
        assert r.content[:10] in both.content and r.content[20:30] in both.content
        past = c.get(done["result"], headers={"Range": f"bytes={size}-"})
        assert past.status_code == 416 and past.headers["content-range"] == f"bytes */{size}"
        stale = c.get(done["result"], headers={"Range": "bytes=0-9", "If-Range": '"other"'})
        assert stale.status_code == 200 and stale.content == r.content  # If-Range: whole file
        assert not (tmp_path / done["id"] / "input").exists()  # the upload is not kept
        # multipart, field `video`
        r = c.post("/videos?style=udnie&stabilize=false",
                   files={"video": ("clip.mp4", clips["short"], "video/mp4")})
        assert r.status_code == 202, r.text
        assert wait_for(c, r.headers["location"], {"done", "failed"})["state"] == "done"
        # cancelling a finished job leaves it as it is: done, the result still there
        r = c.post(loc + "/cancel")
        assert r.status_code == 200 and r.json()["state"] == "done", r.text
        assert c.get(loc + "/result").status_code == 200
        # a finished job deleted: 204, then gone for every verb
        assert c.delete(loc).status_code == 204
        assert_gone(c, loc)
        assert not (tmp_path / first["id"]).exists()


def assert_gone(c, loc: str) -> None:
    """A deleted job: 404 problem+json for every operation on it."""
    for r in (c.get(loc), c.get(loc + "/result"), c.delete(loc), c.post(loc + "/cancel")):
        assert r.status_code == 404, (r.request.method, r.request.url, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["type"] == "urn:stylebox:problem:unknown-job"


def test_cancel_a_running_job(tiny_onnx, engine, tmp_path, clips):
    with make_client(engine, tiny_onnx, video_dir=str(tmp_path)) as c:
        r = c.post("/videos?style=candy", content=clips["long"], headers=MP4)
        loc, job = r.headers["location"], r.json()["id"]
        running = wait_for(c, loc, {"running", "done"})
        while c.get(loc).json()["frames_done"] < 2:
            time.sleep(0.02)
        assert running["state"] == "running"
        assert c.get(loc + "/result").status_code == 409  # not done yet
        r = c.post(loc + "/cancel")
        assert r.status_code == 200 and set(r.json()) == KEYS, r.text
        assert r.json()["state"] == "cancelled" and r.json()["expires_at"]
        s = c.get(loc).json()
        assert s["state"] == "cancelled" and s["result"] is None
        r = c.get(loc + "/result")
        assert r.status_code == 409 and r.headers["content-type"] == "application/problem+json"
        time.sleep(0.5)  # the frame loop has stopped and removed its partial file
        files = job_files(tmp_path / job)
        assert files <= {"status.json", "cancel"}, files
        frames = c.get(loc).json()["frames_done"]
        time.sleep(0.3)
        assert c.get(loc).json()["frames_done"] == frames < 900
        assert not state_of(c.app).videos.local  # its place in the queue is free
        again = c.post(loc + "/cancel")  # idempotent
        assert again.status_code == 200 and again.json()["state"] == "cancelled"
        # ... and a cancelled job can be deleted: then it is gone
        assert c.delete(loc).status_code == 204
        assert_gone(c, loc)
        assert not (tmp_path / job).exists()


def test_delete_a_running_job_stops_it_and_it_is_gone(tiny_onnx, engine, tmp_path, clips):
    with make_client(engine, tiny_onnx, video_dir=str(tmp_path), video_workers=1,
                     video_max_queue=1) as c:
        r = c.post("/videos?style=candy", content=clips["long"], headers=MP4)
        loc, job = r.headers["location"], r.json()["id"]
        wait_for(c, loc, {"running"})
        while c.get(loc).json()["frames_done"] < 2:
            time.sleep(0.02)
        queued = c.post("/videos?style=mosaic", content=clips["short"], headers=MP4)
        assert c.get(queued.headers["location"]).json()["state"] == "queued"
        assert c.delete(loc).status_code == 204
        assert_gone(c, loc)  # at once, not "cancelled"
        time.sleep(0.5)  # the frame loop stops and writes nothing back
        assert not (tmp_path / job).exists()
        assert_gone(c, loc)
        assert [p.name for p in tmp_path.iterdir()] == [queued.json()["id"]]  # no leftovers
        # a queued job deleted: gone too; the worker skips it
        assert wait_for(c, queued.headers["location"], {"done", "failed"})["state"] == "done"
        r = c.post("/videos?style=candy", content=clips["long"], headers=MP4)
        waiting = c.post("/videos?style=udnie", content=clips["short"], headers=MP4)
        assert c.delete(waiting.headers["location"]).status_code == 204
        assert_gone(c, waiting.headers["location"])
        assert c.delete(r.headers["location"]).status_code == 204
        deadline = time.monotonic() + 10
        while state_of(c.app).videos.local:  # both places free again
            assert time.monotonic() < deadline, state_of(c.app).videos.local
            time.sleep(0.05)
        assert list(tmp_path.iterdir()) == [tmp_path / queued.json()["id"]]


def _get_deleting_meanwhile(c, url: str, delete, headers: dict[str, str] | None = None
                            ) -> tuple[int, dict[str, str], bytes]:
    """GET `url` from the app (as ASGI, on the TestClient's event loop) calling `delete` (in
    a thread) the moment the response starts, before a byte of its body is read: the window
    in which a file served by path could vanish. Returns (status, headers, body)."""
    async def run() -> tuple[int, dict[str, str], bytes]:
        start: dict = {}
        body = bytearray()
        asked = False

        async def receive() -> dict:
            nonlocal asked
            if not asked:
                asked = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await anyio.sleep_forever()  # the client stays connected
            raise AssertionError

        async def send(message: dict) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
                await anyio.to_thread.run_sync(delete)
            elif message["type"] == "http.response.body":
                body.extend(message.get("body", b""))

        scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
                 "http_version": "1.1", "method": "GET", "scheme": "http", "path": url,
                 "raw_path": url.encode(), "query_string": b"", "root_path": "",
                 "headers": [(b"host", b"testserver"),
                             *((k.lower().encode(), v.encode())
                               for k, v in (headers or {}).items())],
                 "client": ("127.0.0.1", 50000), "server": ("testserver", 80),
                 "state": c.app_state.copy()}
        await c.app(scope, receive, send)
        return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, \
            bytes(body)

    return c.portal.call(run)


def test_a_download_is_whole_when_its_job_is_deleted_meanwhile(tiny_onnx, engine, tmp_path,
                                                               clips):
    with make_client(engine, tiny_onnx, video_dir=str(tmp_path)) as c:
        locs = []
        for _ in range(3):
            r = c.post("/videos?style=candy", content=clips["short"], headers=MP4)
            locs.append(r.headers["location"])
        results = []
        for loc in locs:
            assert wait_for(c, loc, {"done", "failed"})["state"] == "done"
            results.append(c.get(loc + "/result").content)

        def delete(loc: str):
            def run() -> None:
                assert c.delete(loc).status_code == 204  # the real DELETE, meanwhile
                assert c.get(loc).status_code == 404
            return run

        status, headers, body = _get_deleting_meanwhile(c, locs[0] + "/result", delete(locs[0]))
        assert status == 200 and headers["content-type"] == "video/mp4"
        assert int(headers["content-length"]) == len(body) == len(results[0])
        assert body == results[0]
        # a Range request too
        status, headers, body = _get_deleting_meanwhile(
            c, locs[1] + "/result", delete(locs[1]), {"Range": "bytes=100-"})
        assert status == 206 and body == results[1][100:]
        assert headers["content-range"] == f"bytes 100-{len(results[1]) - 1}/{len(results[1])}"
        # the file alone removed (as a replica's sweep of an expired job does)
        job = locs[2].rsplit("/", 1)[1]
        status, _, body = _get_deleting_meanwhile(
            c, locs[2] + "/result", lambda: os.unlink(tmp_path / job / "result.mp4"))
        assert status == 200 and body == results[2]
        r = c.get(locs[2] + "/result")  # once gone, it is a 404
        assert r.status_code == 404 and r.json()["type"] == "urn:stylebox:problem:unknown-job"
        assert not [p for p in tmp_path.iterdir() if p.name != job]  # nothing else left


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
    clock = Clock()
    with clocked_client(engine, tiny_onnx, clock, video_dir=str(tmp_path),
                        video_result_ttl_s=60) as c:
        r = c.post("/videos?style=candy", content=clips["short"], headers=MP4)
        loc, job = r.headers["location"], r.json()["id"]
        done = wait_for(c, loc, {"done"})
        assert done["expires_at"] == iso(clock() + 60)  # ended now, on the clock
        clock.advance(59)
        assert c.get(loc).status_code == 200 and c.get(loc + "/result").status_code == 200
        clock.advance(2)
        assert c.get(loc).status_code == 404 and c.get(loc + "/result").status_code == 404
        assert c.post(loc + "/cancel").status_code == 404
        tick(c)  # the sweep is due (every TTL/4 on the clock): the folder goes
        assert not (tmp_path / job).exists()


def _status(job: str, state: str, clock: Clock, **more) -> dict:
    """A status.json as a replica writes it."""
    return {"id": job, "state": state, "frames_done": 5, "frames_total": 50, "fps": 3.0,
            "eta_s": 15.0, "error": None, "style": "candy", "width": 64, "height": 48,
            "duration_s": 2.0, "created": clock(), "heartbeat": clock(), "expires": None,
            "owner": "gone:1:x", **more}


def test_a_stale_heartbeat_reads_as_interrupted(tiny_onnx, engine, tmp_path):
    """A running job whose replica died: its status says running, but nobody refreshes it
    (nor a queued one written by an older version, which no replica can take over)."""
    clock = Clock()
    jobs = {"A" * 24: "running", "B" * 24: "queued"}
    for job, state in jobs.items():
        (tmp_path / job).mkdir()
        (tmp_path / job / "input").write_bytes(b"x")
        (tmp_path / job / "status.json").write_text(json.dumps(_status(job, state, clock)))
    with clocked_client(engine, tiny_onnx, clock, video_dir=str(tmp_path),
                        video_heartbeat_s=1, video_result_ttl_s=100) as c:
        assert c.get(f"/videos/{'A' * 24}").json()["state"] == "running"
        beat = clock()
        clock.advance(STALE_BEATS * 1 + 0.5)  # six heartbeats missed
        for job in jobs:
            s = c.get(f"/videos/{job}").json()
            assert s["state"] == "failed" and s["eta_s"] is None and s["frames_done"] == 5
            assert s["error"]["type"] == "urn:stylebox:problem:job-interrupted"
            assert s["expires_at"] == iso(beat + STALE_BEATS + 100)  # from when it died
            assert c.get(f"/videos/{job}/result").status_code == 409
            tick(c)
            assert json.loads((tmp_path / job / "status.json").read_text())["state"] == "failed"
            assert not (tmp_path / job / "input").exists()
        clock.advance(100)
        tick(c)
        assert list(tmp_path.iterdir()) == []


def _write_job(store: JobStore, clip: bytes, owner: str, clock: Clock,
               state: str = "queued") -> str:
    """A job as replica `owner` leaves it on the shared folder: its upload and its status
    (with what to run, as VideoJobs.submit writes it)."""
    job = store.new_id()
    store.create(job)
    store.input(job).write_bytes(clip)
    info = probe(store.input(job))
    request = JobRequest(StyleMix((("candy", 1.0),)), Controls(max_side=32), True, info)
    w, h = info.out_size(32)
    status = JobStatus(id=job, state="queued", frames_total=info.frames, style="candy",
                       width=w, height=h, created=clock(), heartbeat=clock(), owner=owner,
                       request=request)
    if state == "running":
        assert store.claim(job, owner, owner)  # as its worker does when it starts a job
        status = status.to("running", started=clock(), frames_done=3)
    store.write(job, status)
    return job


def test_a_dead_replicas_queued_jobs_are_taken_over(tiny_onnx, engine, tmp_path, clips):
    """Replica A (its files written through its own JobStore) stops refreshing its jobs;
    B, whose clock says A's heartbeats are STALE_BEATS old, takes its queued jobs over and
    runs them; A's running job reads as failed (interrupted), never taken over."""
    clock = Clock()
    a = JobStore(tmp_path, 60, 1, clock)
    queued = [_write_job(a, clips["short"], "a:1:x", clock) for _ in range(2)]
    running = _write_job(a, clips["short"], "a:1:x", clock, state="running")
    with clocked_client(engine, tiny_onnx, clock, video_dir=str(tmp_path), video_workers=1,
                        video_heartbeat_s=1, video_result_ttl_s=60) as c:
        b = state_of(c.app).videos
        tick(c)  # A is alive for all B knows: nothing is taken
        assert not b.local and c.get(f"/videos/{running}").json()["state"] == "running"
        assert c.get(f"/videos/{queued[0]}").json()["state"] == "queued"
        clock.advance(STALE_BEATS + 0.5)  # A is dead
        for job in queued:  # still queued, not failed: a live replica takes it
            assert c.get(f"/videos/{job}").json()["state"] == "queued"
        s = c.get(f"/videos/{running}").json()
        assert s["state"] == "failed", s
        assert s["error"]["type"] == "urn:stylebox:problem:job-interrupted"
        tick(c)
        for job in queued:
            assert a.read(job).owner == b.owner  # B's now (it may be running or done)
        for job in queued:
            s = wait_for(c, f"/videos/{job}", {"done", "failed"})
            assert s["state"] == "done" and s["frames_done"] == 12 and s["width"] == 32, s
            assert c.get(s["result"]).status_code == 200
            assert not a.claim(job, "a:1:x", "a:1:x")  # A, were it alive, could not start it
        b.store.sweep()  # (due every TTL/4): it writes the interrupted job down as failed
        assert a.read(running).state == "failed"
        assert not a.input(running).exists()
        metrics = c.get("/metrics").text
        assert 'stylebox_video_jobs_finished_total{outcome="done"} 2.0' in metrics
        assert "stylebox_video_frames_total 24.0" in metrics


def test_each_orphan_is_claimed_by_exactly_one_replica(tmp_path, clips):
    """Eight replicas' stores race to take the same dead replica's queued jobs over: each
    job goes to exactly one, and a job its owner has started is never taken."""
    clock = Clock()
    dead = JobStore(tmp_path, 60, 1, clock)
    jobs = []
    for _ in range(6):
        jobs.append(_write_job(dead, clips["short"], "dead:1:x", clock))
        clock.advance(0.01)
    started = jobs.pop()
    assert dead.claim(started, "dead:1:x", "dead:1:x")  # its worker's claim, before "running"
    clock.advance(STALE_BEATS + 1)
    stores = [JobStore(tmp_path, 60, 1, clock) for _ in range(8)]
    orphans = stores[0].orphans("r0")
    assert [o.id for o in orphans] == jobs  # the oldest first; not the one being started
    orphans.append(dead.read(started))  # as a replica that read it a moment earlier has it
    won: dict[str, list[str]] = {o.id: [] for o in orphans}
    barrier = threading.Barrier(len(stores))

    def race(i: int) -> None:
        barrier.wait()
        for o in orphans:
            if stores[i].take(o, f"r{i}") is not None:
                won[o.id].append(f"r{i}")

    threads = [threading.Thread(target=race, args=(i,)) for i in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for job in jobs:
        assert len(won[job]) == 1, won
        assert dead.read(job).owner == won[job][0] and dead.read(job).state == "queued"
    assert won[started] == []
    assert stores[0].orphans("r0") == []  # the new owners are alive (fresh heartbeats)
    # a started job whose owner died before writing "running" cannot be claimed again: it
    # reads as failed (interrupted) once the claim is STALE_BEATS old
    assert dead.effective(dead.read(started)).state == "failed"


def test_a_replica_shutting_down_hands_its_queued_jobs_over(tiny_onnx, engine, tmp_path,
                                                             clips):
    with make_client(engine, tiny_onnx, video_dir=str(tmp_path), video_workers=1) as a:
        long = a.post("/videos?style=candy", content=clips["long"], headers=MP4)
        wait_for(a, long.headers["location"], {"running"})
        short = a.post("/videos?style=mosaic", content=clips["short"], headers=MP4)
        assert a.get(short.headers["location"]).json()["state"] == "queued"
    # A has stopped: its running job failed at once, its queued one waits for a replica
    store = JobStore(tmp_path, 60, 5)
    assert store.read(long.json()["id"]).state == "failed"
    handed = store.read(short.json()["id"])
    assert handed.state == "queued" and handed.owner.startswith(RELEASED)
    with make_client(engine, tiny_onnx, video_dir=str(tmp_path)) as b:
        tick(b)  # no heartbeat to wait for: a released job is taken at once
        s = wait_for(b, short.headers["location"], {"done", "failed"})
        assert s["state"] == "done", s
        s = b.get(long.headers["location"]).json()
        assert s["state"] == "failed"
        assert s["error"]["type"] == "urn:stylebox:problem:job-interrupted"


def test_a_status_moves_only_as_transitions_say(tmp_path):
    clock = Clock()
    status = JobStatus(id="C" * 24, state="queued", style="candy", width=2, height=2,
                       created=clock(), heartbeat=clock(), owner="me")
    with pytest.raises(ValueError):
        status.to("done")  # it has to run first
    running = status.to("running")
    done = JobStore(tmp_path, 10, 1, clock).end(running, "done", clock() + 5)
    assert done.expires == clock() + 15 and done.eta_s is None
    for state in TRANSITIONS:
        with pytest.raises(ValueError):
            done.to(state)
    with pytest.raises(ValueError):
        status.update(state="done")
    assert JobStatus.model_validate_json(done.model_dump_json()) == done


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
        assert c.post(r.headers["location"] + "/cancel").status_code == 401
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


@pytest.fixture(scope="module")
def restyled_onnx(tmp_path_factory) -> Path:
    """The tiny model's successor: its styles reordered (mosaic first), udnie gone, two new
    ones (four styles where it had three)."""
    from stylebox.model.export import export_onnx

    styles = [{"name": "mosaic", "title": "Mosaic"}, {"name": "candy", "title": "Candy"},
              {"name": "wave", "title": "Wave"}, {"name": "scream", "title": "Scream"}]
    card = make_tiny_card(styles)
    card.version = "restyled"
    path = tmp_path_factory.mktemp("restyled") / "restyled.onnx"
    export_onnx(make_tiny_generator(n_styles=4, seed=1), card, path, export_size=32)
    return path


def _mean_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return float(np.mean([np.abs(x.astype(np.int16) - y).mean()
                          for x, y in zip(a, b, strict=True)]))


def test_queued_jobs_survive_a_reload_that_changes_the_styles(tiny_onnx, restyled_onnx,
                                                              tmp_path, clips):
    """Jobs queued against the old style list run on the new model by style name; a job
    whose style the new model lacks ends as failed, saying so (never a 500)."""
    served = tmp_path / "served.onnx"
    shutil.copy(tiny_onnx, served)
    jobs = tmp_path / "jobs"
    with make_client(OrtEngine(served), served, video_dir=str(jobs), video_workers=1,
                     video_max_queue=3, allow_admin_without_key=True) as c:
        long = c.post("/videos?style=candy", content=clips["long"], headers=MP4)
        wait_for(c, long.headers["location"], {"running"})  # the one worker is busy
        queued = {spec: c.post(f"/videos?style={spec}&stabilize=false", content=clips["short"],
                               headers=MP4) for spec in ("mosaic", "udnie", "candy:1,udnie:0")}
        for r in queued.values():
            assert r.status_code == 202 and r.json()["state"] == "queued", r.text
        tmp = served.with_name("served.onnx.new")
        shutil.copy(restyled_onnx, tmp)
        os.replace(tmp, served)
        r = c.post("/admin/reload")
        assert r.status_code == 200 and r.json()["model"]["styles"] == [
            "mosaic", "candy", "wave", "scream"], r.text
        assert c.delete(long.headers["location"]).status_code == 204  # the queue moves on
        ended = {spec: wait_for(c, r.headers["location"], {"done", "failed"})
                 for spec, r in queued.items()}
        gone = ended["udnie"]
        assert gone["state"] == "failed", gone
        assert gone["error"]["type"] == "urn:stylebox:problem:unknown-style"
        assert gone["error"]["status"] < 500 and gone["error"]["unknown_styles"] == ["udnie"]
        assert gone["error"]["valid_styles"] == ["mosaic", "candy", "wave", "scream"]
        assert "reloaded" in gone["error"]["detail"], gone["error"]
        assert c.get(queued["udnie"].headers["location"] + "/result").status_code == 409
        for spec in ("mosaic", "candy:1,udnie:0"):  # a zero weight on a gone style is no use
            assert ended[spec]["state"] == "done", ended[spec]
        got = {}
        for spec in ("mosaic", "candy:1,udnie:0"):
            out = tmp_path / f"{spec}.mp4"
            out.write_bytes(c.get(queued[spec].headers["location"] + "/result").content)
            got[spec] = read_back(out)[1]
        # By name: each result is its style in the new model, not the style now at the
        # index the name had in the old one.
        engine = state_of(c.app).engine
        assert engine.card.version == "restyled"
        src = tmp_path / "short.mp4"
        src.write_bytes(clips["short"])
        want = {}
        for i, name in enumerate(engine.style_names[:2]):
            dst = tmp_path / f"want-{name}.mp4"
            stylize_video(src, dst, engine, engine.one_hot(i), momentum=0.0)
            want[name] = read_back(dst)[1]
        for spec, name, other in (("mosaic", "mosaic", "candy"),
                                  ("candy:1,udnie:0", "candy", "mosaic")):
            near, far = _mean_diff(got[spec], want[name]), _mean_diff(got[spec], want[other])
            assert near < 2 and far > 4 * near, (spec, near, far)
