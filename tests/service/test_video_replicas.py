"""Two `stylebox serve` replicas sharing one video folder, as compose's `scale` profile runs
them (one named volume in every replica): a job submitted to one is polled, downloaded,
cancelled and deleted through the other, and through deploy/lb.py's round robin; a replica
killed mid-job leaves its running job failed (interrupted) on the other, never running for
ever, and its queued job is taken over and run by the other. (The same with a fake clock,
in-process: test_video_jobs.py.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import httpx
import pytest

from stylebox.procs import ROOT, ServeProcess, free_port, stop, wait_ready
from stylebox.videobench import make_clip

MP4 = {"Content-Type": "video/mp4"}


@pytest.fixture
def replicas(tiny_onnx, tmp_path):
    settings = {"STYLEBOX_VIDEO_DIR": str(tmp_path / "videos"),
                "STYLEBOX_VIDEO_HEARTBEAT_S": "0.5"}
    servers = [ServeProcess(tiny_onnx, settings) for _ in range(2)]
    try:
        for s in servers:
            s.wait_ready()
        yield servers
    finally:
        for s in servers:
            s.stop()


def _wait(base: str, loc: str, states: set[str], timeout_s: float = 90) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        s = httpx.get(base + loc, timeout=10).json()
        if s["state"] in states:
            return s
        assert time.monotonic() < deadline, s
        time.sleep(0.1)


def test_submit_on_one_replica_poll_download_cancel_on_the_other(replicas, tmp_path):
    a, b = (s.base for s in replicas)
    clip = make_clip(tmp_path / "c.mp4", 64, 48, 15, 10, audio="aac").read_bytes()
    r = httpx.post(f"{a}/videos?style=candy", content=clip, headers=MP4, timeout=60)
    assert r.status_code == 202, r.text
    loc = r.headers["location"]
    done = _wait(b, loc, {"done", "failed"})  # polled on the replica that does not run it
    assert done["state"] == "done", done
    got = httpx.get(b + done["result"], timeout=60)
    assert got.status_code == 200 and got.headers["content-type"] == "video/mp4"
    (tmp_path / "out.mp4").write_bytes(got.content)
    with av.open(str(tmp_path / "out.mp4")) as f:
        assert sum(1 for _ in f.decode(video=0)) == 15
    # Cancel on B a job running on A: A's frame loop sees the marker and stops.
    long = make_clip(tmp_path / "long.mp4", 320, 240, 900, 30).read_bytes()
    r = httpx.post(f"{a}/videos?style=candy", content=long, headers=MP4, timeout=60)
    loc = r.headers["location"]
    _wait(b, loc, {"running"})
    while httpx.get(b + loc).json()["frames_done"] < 2:
        time.sleep(0.05)
    cancelled = httpx.post(f"{b}{loc}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    assert httpx.get(a + loc).json()["state"] == "cancelled"
    time.sleep(1.0)
    frames = httpx.get(a + loc).json()["frames_done"]
    time.sleep(0.5)
    assert httpx.get(b + loc).json()["frames_done"] == frames < 900  # it stopped
    job = tmp_path / "videos" / r.json()["id"]
    assert {p.name for p in job.iterdir() if not p.name.startswith("claim-")} <= {
        "status.json", "cancel"}
    # Delete on B a job running on A: gone on both at once, and A, which finds its folder
    # gone, stops and writes nothing back.
    r = httpx.post(f"{a}/videos?style=candy", content=long, headers=MP4, timeout=60)
    loc = r.headers["location"]
    _wait(b, loc, {"running"})
    while httpx.get(b + loc).json()["frames_done"] < 2:
        time.sleep(0.05)
    assert httpx.delete(b + loc).status_code == 204
    for base in (a, b):
        for method, path in (("GET", loc), ("GET", loc + "/result"), ("DELETE", loc),
                             ("POST", loc + "/cancel")):
            assert httpx.request(method, base + path).status_code == 404, (base, method, path)
    time.sleep(1.5)  # three of A's heartbeats: none brings the job back
    assert not (tmp_path / "videos" / r.json()["id"]).exists()
    assert httpx.get(a + loc).status_code == 404
    assert {p.name for p in (tmp_path / "videos").iterdir()} == {
        done["id"], cancelled.json()["id"]}
    # A's worker goes on to the next job; nothing went wrong on A's side of the delete
    short = httpx.post(f"{a}/videos?style=candy", content=clip, headers=MP4, timeout=60)
    assert _wait(b, short.headers["location"], {"done", "failed"})["state"] == "done"
    assert "Traceback" not in replicas[0].output(), replicas[0].output()[-3000:]


def test_through_the_round_robin_proxy(replicas, tmp_path):
    port = free_port()
    lb = subprocess.Popen([sys.executable, str(ROOT / "deploy" / "lb.py"), "--listen",
                           str(port), *(f"127.0.0.1:{s.port}" for s in replicas)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(f"{base}/readyz", [lb])
        clip = make_clip(tmp_path / "c.mp4", 48, 32, 8, 10).read_bytes()
        locs = []
        for _ in range(2):  # each request on a new connection: the replicas take turns
            r = httpx.post(f"{base}/videos?style=mosaic", content=clip, headers=MP4,
                           timeout=60)
            assert r.status_code == 202, r.text
            locs.append(r.headers["location"])
        for loc in locs:
            s = _wait(base, loc, {"done", "failed"})
            assert s["state"] == "done", s
            assert httpx.get(base + s["result"], timeout=60).status_code == 200
    finally:
        stop(lb)
    assert "\"127.0.0.1:" in (lb.stdout.read() if lb.stdout else "")


def test_a_killed_replica_leaves_an_interrupted_job(replicas, tmp_path):
    a, b = replicas
    long = make_clip(tmp_path / "long.mp4", 320, 240, 900, 30).read_bytes()
    r = httpx.post(f"{a.base}/videos?style=candy", content=long, headers=MP4, timeout=60)
    loc = r.headers["location"]
    _wait(b.base, loc, {"running"})
    clip = make_clip(tmp_path / "c.mp4", 64, 48, 15, 10).read_bytes()
    queued = httpx.post(f"{a.base}/videos?style=mosaic", content=clip, headers=MP4,
                        timeout=60)  # behind the long one: A has one worker
    assert queued.json()["state"] == "queued", queued.text
    status = tmp_path / "videos" / queued.json()["id"] / "status.json"
    owner_a = json.loads(status.read_text())["owner"]
    os.kill(a.proc.pid, signal.SIGKILL)  # no shutdown: its status is simply never refreshed
    a.proc.wait()
    s = _wait(b.base, loc, {"failed"}, timeout_s=30)  # 6 heartbeats of 0.5 s
    assert s["error"]["type"] == "urn:stylebox:problem:job-interrupted"
    assert httpx.get(f"{b.base}{loc}/result").status_code == 409
    assert not Path(tmp_path / "videos" / r.json()["id"] / "result.mp4").exists()
    # the queued one was never started: B takes it over and runs it
    s = _wait(b.base, queued.headers["location"], {"done", "failed"}, timeout_s=60)
    assert s["state"] == "done" and s["frames_done"] == 15, s
    assert httpx.get(b.base + s["result"], timeout=60).status_code == 200
    assert json.loads(status.read_text())["owner"] not in (owner_a, None)  # B's
