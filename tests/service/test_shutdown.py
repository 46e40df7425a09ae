"""Graceful shutdown of a real `stylebox serve`: on SIGTERM readiness turns false first, a
request in flight (here: one whose upload is only half sent) still completes with 200, and
the process then exits 0 and stops listening. Also: a bad model file stops start-up with
one clear line, and the JSON log format really is one JSON object per line.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from stylebox.procs import ServeProcess, service_env, stop
from tests.conftest import ROOT, png


def _start(model: Path, log_path: Path, **env: str) -> tuple[subprocess.Popen, str]:
    server = ServeProcess(model, env, log=log_path, log_level="info")
    try:
        server.wait_ready(60)
    except (RuntimeError, TimeoutError):
        server.stop()
        raise
    return server.proc, server.base


def test_sigterm_drains_then_finishes_in_flight_work(tiny_onnx, tmp_path):
    proc, base = _start(tiny_onnx, tmp_path / "log.txt", STYLEBOX_DRAIN_S="1.0",
                        STYLEBOX_LOG_FORMAT="json")
    try:
        body = png(40, 48, seed=0)
        port = int(base.rsplit(":", 1)[1])
        sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        head = (f"POST /stylize?style=candy HTTP/1.1\r\nHost: t\r\nContent-Type: image/png\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        sock.sendall(head + body[: len(body) // 2])  # the request is now in flight
        time.sleep(0.3)
        t_term = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        r = httpx.get(f"{base}/readyz", timeout=5)  # still listening, but not ready
        assert r.status_code == 503 and "shutting down" in r.json()["detail"]
        assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
        time.sleep(max(0.0, t_term + 1.5 - time.monotonic()))  # past the drain window
        sock.sendall(body[len(body) // 2:])
        reply = b""
        while b"\r\n\r\n" not in reply or len(reply) < 200:
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
        sock.close()
        assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
        assert b"content-type: image/png" in reply.lower()
        assert proc.wait(timeout=30) == 0
        try:
            httpx.get(f"{base}/healthz", timeout=2)
            raise AssertionError("still listening after shutdown")
        except httpx.ConnectError:
            pass
    finally:
        stop(proc)
    lines = [ln for ln in (tmp_path / "log.txt").read_text().splitlines() if ln.startswith("{")]
    access = [json.loads(ln) for ln in lines if '"stylebox.access"' in ln]
    assert any(a["route"] == "/stylize" and a["status"] == 200 for a in access)
    assert any(a["route"] == "/readyz" and a["status"] == 503 for a in access)


def test_bad_model_file_stops_start_up_with_one_line(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not an onnx model" * 10)
    r = subprocess.run([sys.executable, "-m", "stylebox", "serve", "--port", "0"],
                       env=service_env({"STYLEBOX_MODEL_PATH": str(bad)}),
                       capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 1
    lines = (r.stdout + r.stderr).strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, lines
    assert str(bad) in lines[0] and "not a loadable ONNX model" in lines[0]


def test_a_native_crash_leaves_the_threads_stacks_in_the_log(tiny_onnx, tmp_path):
    """A crash in native code (FFmpeg, a runtime) kills the process; its log then says what
    every thread was running (faulthandler), not nothing. SIGSEGV stands in for the crash."""
    proc, _ = _start(tiny_onnx, tmp_path / "log.txt")
    try:
        proc.send_signal(signal.SIGSEGV)
        assert proc.wait(timeout=30) == -signal.SIGSEGV
    finally:
        stop(proc)
    log = (tmp_path / "log.txt").read_text()
    assert "Fatal Python error: Segmentation fault" in log, log[-2000:]
    assert 'in serve_main' in log and "uvicorn" in log, log[-2000:]
