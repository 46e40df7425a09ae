"""`stylebox serve` child processes on loopback: a free port, a readiness wait, start and stop.

One implementation for everything that needs a real server rather than the in-process test
client: the benchmark's HTTP load run, the soak tool, deploy/replicas.py and the tests that
drive uvicorn over a socket; and `rss_kib`, the one reading of a process's resident memory
(the soak's server, video-bench's and the tiling demo's own). The standard library's HTTP
client only, so the runtime install (`pip install -e '.[openvino]'`, no dev extra) runs the
tools that start a server.
"""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Loopback only: an http_proxy set in the environment must not carry these requests away.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid: int | None = None) -> tuple[int, int]:
    """(current, peak) resident memory in KiB of process `pid`, this one when None: VmRSS
    and VmHWM from /proc/PID/status. VmHWM, not ru_maxrss: on Linux ru_maxrss survives
    execve, so a child started by a parent holding torch would report the parent's peak.
    Without /proc (not Linux) this process reads (0, ru_maxrss); another process raises."""
    fields: dict[str, int] = {}
    try:
        with open(f"/proc/{'self' if pid is None else pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    fields[key] = int(value.split()[0])
    except OSError:
        if pid is not None:
            raise
        import resource  # Unix only

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # bytes on macOS, else KiB
        return 0, peak // 1024 if sys.platform == "darwin" else peak
    return fields.get("VmRSS", 0), fields.get("VmHWM", 0)


def service_env(settings: dict[str, str] | None = None, *, inherit_settings: bool = False
                ) -> dict[str, str]:
    """This environment with the repo importable and `settings` (STYLEBOX_* names) applied.

    The caller's own STYLEBOX_* variables are dropped unless `inherit_settings`, so a
    developer's shell cannot change what a test or a benchmark measures.
    """
    env = {k: v for k, v in os.environ.items()
           if inherit_settings or not k.startswith("STYLEBOX_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return {**env, **(settings or {})}


def _output(proc: subprocess.Popen, log: Path | None) -> str:
    if log is not None and log.is_file():
        return log.read_text(errors="replace")[-2000:]
    if proc.stdout is not None and proc.poll() is not None:
        out = proc.stdout.read()
        return (out.decode(errors="replace") if isinstance(out, bytes) else out)[-2000:]
    return ""


def wait_ready(url: str, procs: Sequence[subprocess.Popen] = (), timeout_s: float = 60.0,
               log: Path | None = None) -> None:
    """Poll `url` until it answers 200; fail at once if one of `procs` exits meanwhile."""
    deadline = time.monotonic() + timeout_s
    while True:
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(f"{Path(str(p.args[0])).name} exited with {p.returncode}: "
                                   f"{_output(p, log)}")
        try:
            with _DIRECT.open(url, timeout=2) as r:  # 4xx/5xx raise HTTPError (an OSError)
                if r.status == 200:
                    return
        except (OSError, http.client.HTTPException):  # refused, reset, not ready, timed out
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} not ready after {timeout_s:.0f} s")
        time.sleep(0.2)


def stop(*procs: subprocess.Popen, timeout_s: float = 20.0) -> None:
    """SIGTERM every process still running, then wait for each; SIGKILL any that hangs."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


class ServeProcess:
    """`python -m stylebox serve` on a free loopback port; its output goes to `log`.

    A file, not a pipe: an unread pipe fills up and stalls the server.
    """

    def __init__(self, model: str | Path, settings: dict[str, str] | None = None, *,
                 log: Path | None = None, log_level: str = "warning",
                 inherit_settings: bool = False) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self._tmp = None if log else tempfile.TemporaryDirectory()
        self.log = log or Path(self._tmp.name) / "serve.log"
        env = service_env({"STYLEBOX_MODEL_PATH": str(model), **(settings or {})},
                          inherit_settings=inherit_settings)
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "stylebox", "serve", "--host", "127.0.0.1",
                 "--port", str(self.port), "--log-level", log_level],
                env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        wait_ready(f"{self.base}/readyz", [self.proc], timeout_s, self.log)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout_s: float = 30.0) -> None:
        stop(self.proc, timeout_s=timeout_s)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


@contextmanager
def serving(model: str | Path, settings: dict[str, str] | None = None,
            timeout_s: float = 120.0, **kwargs) -> Iterator[str]:
    """Run `stylebox serve` for the block; yields its base URL, e.g. http://127.0.0.1:PORT."""
    server = ServeProcess(model, settings, **kwargs)
    try:
        server.wait_ready(timeout_s)
        yield server.base
    finally:
        server.stop()
