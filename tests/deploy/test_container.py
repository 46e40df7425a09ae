"""The CPU image built offline and run with the compose file, checked as a user would.

The build takes nothing from a registry: the base image is made here with debootstrap
(Debian bookworm minbase + python3 + python3-venv, `docker import`), the Python packages come
from a wheelhouse downloaded first, and `docker build --network none` proves the build needs
no network (Dockerfile.cpu: any builder, BuildKit or not). Then `docker compose up` of the
project's compose file (its `stylebox` service, its limits: 2 CPUs, 2 GiB, read-only root)
and what a user would check: healthy, /readyz, a photo stylized at its own size, uid 10001,
the read-only root honoured, no torch, the image's size, the cold start, 32 concurrent 4K
uploads answered only 200 or 503 with no OOM kill, and a clean stop and `down`.

Marked `container` (`pytest -m "not container"` leaves it out). It needs root (debootstrap),
debootstrap, docker-compose or `docker compose`, a Debian mirror and PyPI; it starts dockerd
itself, and stops it after, where none runs. It skips only where no Docker engine runs or can
be started; anything else that is missing is a failure. About 3-4 minutes on 2 cores.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest

from stylebox.loadtest import run_threads
from stylebox.procs import free_port
from stylebox.samples import photo_jpeg
from stylebox.soak import UHD
from tests.conftest import ROOT

pytestmark = pytest.mark.container

DEBIAN_MIRROR = "http://deb.debian.org/debian"
PHOTOS = ROOT.parent / "shared/data/eval-photos"
UID = 10001
GIB = 2**30
# The environment a container image gets from `docker import` (none): what Debian's is.
BASE_ENV = ["ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "ENV LANG=C.UTF-8"]
# Written by a runtime that could not write where it wanted (a read-only root, no home).
WRITE_FAILURES = ("Read-only file system", "Permission denied", "Failed to persist",
                  "Failed to find location", "No space left")


def _run(*args: str, timeout: float = 600, check: bool = True, **kwargs
         ) -> subprocess.CompletedProcess:
    r = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and r.returncode:
        raise AssertionError(f"{' '.join(args[:4])} ... exited {r.returncode}:\n"
                             f"{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r


def _engine_up() -> bool:
    return shutil.which("docker") is not None and subprocess.run(
        ["docker", "info"], capture_output=True, timeout=60).returncode == 0


# -- a Docker engine: the one running, else dockerd started here (and stopped after) ---------

@pytest.fixture(scope="module")
def docker_engine(tmp_path_factory):
    if _engine_up():
        yield
        return
    dockerd = shutil.which("dockerd") or ("/usr/sbin/dockerd" if os.access(
        "/usr/sbin/dockerd", os.X_OK) else None)
    if not shutil.which("docker") or not dockerd:
        pytest.skip("no Docker engine: docker/dockerd not installed (apt-get install docker.io)")
    if os.geteuid() != 0:
        pytest.skip("no Docker engine running, and only root can start dockerd here")
    log = tmp_path_factory.mktemp("dockerd") / "dockerd.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([dockerd], stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    deadline = time.monotonic() + 60
    while not _engine_up():
        if proc.poll() is not None or time.monotonic() > deadline:
            _stop_dockerd(proc)
            last = (log.read_text(errors="replace").strip().splitlines() or ["no output"])[-1]
            pytest.skip(f"no Docker engine: dockerd did not start ({last[-200:]})")
        time.sleep(0.5)
    try:
        yield
    finally:
        _stop_dockerd(proc)


def _stop_dockerd(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()  # dockerd stops its containers and its containerd
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _compose_command() -> list[str]:
    if subprocess.run(["docker", "compose", "version"], capture_output=True,
                      timeout=60).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise AssertionError("neither `docker compose` nor docker-compose is installed "
                         "(apt-get install docker-compose)")


# -- the offline build ------------------------------------------------------------------------

def _copied_sources(dockerfile: str) -> list[str]:
    """What the Dockerfile copies from the build context."""
    out = []
    for line in dockerfile.splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not words[1].startswith("--from"):
            out += words[1:-1]
    return out


def _context(path: Path) -> Path:
    """A build context with what Dockerfile.cpu copies, beside an empty wheelhouse."""
    dockerfile = (ROOT / "Dockerfile.cpu").read_text()
    path.mkdir()
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pt", "*.whl")
    for src in _copied_sources(dockerfile):
        if (ROOT / src).is_dir():
            shutil.copytree(ROOT / src, path / src, ignore=skip, dirs_exist_ok=True)
        else:
            shutil.copy(ROOT / src, path / src)
    for name in ("Dockerfile.cpu", ".dockerignore"):
        shutil.copy(ROOT / name, path / name)
    return path


def _wheelhouse(dest: Path, log: Path) -> subprocess.Popen:
    """deploy/wheels/README.md's command: the runtime deps, openvino and the build backend."""
    return subprocess.Popen(
        [sys.executable, "-m", "pip", "download", "-q", "-d", str(dest),
         "--only-binary=:all:", "--python-version", "3.11",
         "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux2014_x86_64",
         f"{ROOT}[openvino]", "setuptools>=68"],
        stdout=log.open("wb"), stderr=subprocess.STDOUT)


def _debootstrap(rootfs: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        ["debootstrap", "--variant=minbase", "--include=python3,python3-venv", "bookworm",
         str(rootfs), DEBIAN_MIRROR], stdout=log.open("wb"), stderr=subprocess.STDOUT)


def _wait(proc: subprocess.Popen, log: Path, what: str, timeout: float) -> None:
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"{what} took over {timeout:.0f} s") from None
    assert rc == 0, f"{what} exited {rc}:\n{log.read_text(errors='replace')[-3000:]}"


def _import_base(rootfs: Path, tag: str) -> None:
    """The debootstrapped tree, less package caches and docs, as an image (`docker import`)."""
    for pattern in ("var/cache/apt/archives/*.deb", "var/lib/apt/lists/*", "usr/share/doc",
                    "usr/share/man", "usr/share/info", "usr/share/locale"):
        for p in rootfs.glob(pattern):
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    changes = [a for env in BASE_ENV for a in ("-c", env)]
    r = subprocess.run(["docker", "import", *changes, "-", tag], stdin=tar.stdout,
                       capture_output=True, text=True, timeout=300)
    tar.stdout.close()
    assert tar.wait() == 0 and r.returncode == 0, r.stderr


def _dangling() -> set[str]:
    r = _run("docker", "images", "-q", "--no-trunc", "-f", "dangling=true")
    return set(r.stdout.split())


# -- the running service ------------------------------------------------------------------------

class Stack:
    def __init__(self, tmp: Path, compose: list[str]) -> None:
        tag = uuid.uuid4().hex[:8]
        self.tmp = tmp
        self.project = f"stylebox-test-{tag}"
        self.base = f"stylebox-test-base:{tag}"
        self.image = f"stylebox-test:{tag}"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.times: dict[str, float] = {}
        override = tmp / "image.yml"  # the one change: the image built here, not stylebox:cpu
        override.write_text(f"services:\n  stylebox:\n    image: {self.image}\n")
        empty_env = tmp / "empty.env"  # the compose file's own defaults, not a local .env's
        empty_env.write_text("")
        self.compose = [*compose, "-p", self.project, "--env-file", str(empty_env),
                        "-f", str(ROOT / "docker-compose.yml"), "-f", str(override)]
        # The shell's STYLEBOX_* would override the compose file's defaults: none here.
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("STYLEBOX_")}
        self.env["HOST_PORT"] = str(self.port)
        self.cid = ""
        self.started = 0.0  # when `compose up` began (time.monotonic())

    def step(self, name: str, t0: float) -> None:
        self.times[name] = round(time.monotonic() - t0, 1)

    def run_compose(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return _run(*self.compose, *args, env=self.env, timeout=timeout)

    def inspect(self) -> dict:
        return json.loads(_run("docker", "inspect", self.cid).stdout)[0]

    def logs(self) -> str:
        r = _run("docker", "logs", self.cid, check=False)
        return r.stdout + r.stderr

    def exec(self, *args: str) -> subprocess.CompletedProcess:
        return _run("docker", "exec", self.cid, *args, check=False, timeout=120)

    def peak_memory(self) -> int | None:
        """The container's peak memory (its cgroup's high-water mark), where readable."""
        for path in (f"/sys/fs/cgroup/memory/docker/{self.cid}/memory.max_usage_in_bytes",
                     f"/sys/fs/cgroup/system.slice/docker-{self.cid}.scope/memory.peak",
                     f"/sys/fs/cgroup/docker/{self.cid}/memory.peak"):
            if os.path.exists(path):
                return int(Path(path).read_text())
        return None


@pytest.fixture(scope="module")
def stack(docker_engine, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("container")
    compose = _compose_command()
    assert shutil.which("debootstrap"), "debootstrap is not installed (apt-get install debootstrap)"
    assert os.geteuid() == 0, "debootstrap needs root (or deselect: -m 'not container')"
    s = Stack(tmp, compose)
    dangling = _dangling()
    try:
        # The base and the wheelhouse at once: both mostly wait on the network.
        t0 = time.monotonic()
        ctx = _context(tmp / "context")
        pip_log, boot_log = tmp / "pip.log", tmp / "debootstrap.log"
        pip = _wheelhouse(ctx / "deploy/wheels", pip_log)
        boot = _debootstrap(tmp / "rootfs", boot_log)
        _wait(pip, pip_log, "pip download", 600)
        s.step("wheelhouse", t0)
        _wait(boot, boot_log, "debootstrap", 900)
        s.step("debootstrap", t0)
        t0 = time.monotonic()
        _import_base(tmp / "rootfs", s.base)
        shutil.rmtree(tmp / "rootfs")
        s.step("import", t0)

        t0 = time.monotonic()
        _run("docker", "build", "--network", "none", "-f", str(ctx / "Dockerfile.cpu"),
             "--build-arg", f"CPU_BASE={s.base}", "--build-arg", "PIP_OFFLINE=1",
             "-t", s.image, str(ctx), timeout=900)
        s.step("build", t0)

        t0 = time.monotonic()
        s.run_compose("up", "-d", "stylebox")
        s.cid = s.run_compose("ps", "-q", "stylebox").stdout.strip()
        assert s.cid, "compose started no stylebox container"
        s.started = t0
        deadline = t0 + 180
        while True:
            state = s.inspect()["State"]
            assert state["Running"], f"the container stopped:\n{s.logs()[-3000:]}"
            try:
                if httpx.get(f"{s.url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"not ready in 180 s:\n{s.logs()[-3000:]}"
            time.sleep(0.25)
        s.step("cold start to ready", t0)
        yield s
    finally:
        if s.cid:
            subprocess.run([*s.compose, "down", "-v", "-t", "30"], env=s.env,
                           capture_output=True, timeout=300)
        subprocess.run(["docker", "rmi", "-f", s.image, s.base], capture_output=True,
                       timeout=300)
        new = _dangling() - dangling  # the build's intermediate stages
        if new:
            subprocess.run(["docker", "rmi", "-f", *new], capture_output=True, timeout=300)


# -- what a user checks -----------------------------------------------------------------------

def _photo() -> tuple[bytes, tuple[int, int]]:
    """A real photo (../shared/data/eval-photos) where there is one, else a photo-like JPEG."""
    from PIL import Image

    files = sorted(PHOTOS.glob("*.jpg"))
    data = files[0].read_bytes() if files else photo_jpeg(640, 480)
    return data, Image.open(io.BytesIO(data)).size


def _uhd_uploads(n: int) -> list[bytes]:
    """n distinct 3840x2160 JPEGs: real photos resized up where there are some."""
    from PIL import Image

    files = sorted(PHOTOS.glob("*.jpg"))[:n]
    if not files:
        return [photo_jpeg(*UHD, seed=i) for i in range(n)]
    out = []
    for f in files:
        buf = io.BytesIO()
        Image.open(f).convert("RGB").resize(UHD, Image.BICUBIC).save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def test_image_is_small_torch_free_and_non_root(stack):
    image = json.loads(_run("docker", "image", "inspect", stack.image).stdout)[0]
    stack.image_mb = round(image["Size"] / 1e6)
    assert image["Size"] < GIB, f"the image is {stack.image_mb} MB"  # torch alone is more
    assert image["Config"]["User"] == f"{UID}:{UID}"
    r = stack.exec("python", "-c", "import importlib.util as u, onnxruntime, openvino; "
                   "print(u.find_spec('torch'))")
    assert r.returncode == 0 and r.stdout.strip() == "None", r.stdout + r.stderr
    # The service itself (PID 1), not only `docker exec`, runs as the image's uid.
    status = stack.exec("cat", "/proc/1/status").stdout
    uids = next(ln.split()[1:] for ln in status.splitlines() if ln.startswith("Uid:"))
    assert set(uids) == {str(UID)}, status


def test_compose_limits_and_read_only_root_hold(stack):
    host = stack.inspect()["HostConfig"]
    assert host["Memory"] == 2 * GIB and host["NanoCpus"] == 2 * 10**9, host
    assert host["ReadonlyRootfs"] is True and "/tmp" in host["Tmpfs"]
    for path in ("/app/x", "/opt/venv/x", "/home/stylebox/x"):
        r = stack.exec("touch", path)
        assert r.returncode != 0 and "Read-only file system" in r.stderr, (path, r.stderr)
    # tmpfs, the engine-cache volume, the model volume (the trainer workers write it)
    for path in ("/tmp/x", "/var/cache/stylebox/x", "/var/lib/stylebox/model/x"):
        assert stack.exec("touch", path).returncode == 0, path
        stack.exec("rm", path)
    # ONNX Runtime and OpenVINO wrote nothing, and failed to write nothing: their telemetry
    # is off, the home is read-only by design.
    logs = stack.logs()
    assert not [w for w in WRITE_FAILURES if w in logs], logs[-3000:]


def test_model_is_seeded_onto_the_model_volume(stack):
    """The compose CPU service serves a copy of STYLEBOX_MODEL_SEED on the model volume, with
    the checkpoint its card names beside it (what a trainer worker edits)."""
    from stylebox.model import lineage

    seed = ROOT / "models/stylebox-a0.25.onnx"
    ckpt = lineage.checkpoint_of(seed).relative_to(seed.parent).as_posix()
    r = stack.exec("sha256sum", "/var/lib/stylebox/model/stylebox-a0.25.onnx",
                   f"/var/lib/stylebox/model/{ckpt}")
    assert r.returncode == 0, r.stderr
    sums = [ln.split()[0] for ln in r.stdout.splitlines()]
    assert sums == [lineage.sha256_of(seed), lineage.sha256_of(seed.parent / ckpt)]


def test_serves_a_photo_at_its_own_size(stack):
    from PIL import Image

    ready = httpx.get(f"{stack.url}/readyz", timeout=10).json()
    assert ready["status"] == "ready" and ready["engine"] in ("openvino", "onnxruntime")
    styles = [s["name"] for s in httpx.get(f"{stack.url}/styles", timeout=10).json()["styles"]]
    data, size = _photo()
    r = httpx.post(f"{stack.url}/stylize?style={styles[0]}", content=data,
                   headers={"Content-Type": "image/jpeg"}, timeout=120)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png", r.text[:500]
    assert Image.open(io.BytesIO(r.content)).size == size


def test_serves_the_fast_model_beside_the_default(stack):
    """compose's default STYLEBOX_EXTRA_MODELS: the fast steady model as `fast`, each timed
    at 640 x 480; live sessions use whichever of the two holds 15 FPS here (auto)."""
    models = httpx.get(f"{stack.url}/models", timeout=60).json()
    by_name = {m["name"]: m for m in models["models"]}
    assert set(by_name) == {"default", "fast"}, models
    assert by_name["fast"]["file"] == "stylebox-a0.25-fast.onnx"
    assert by_name["fast"]["styles"] == by_name["default"]["styles"]
    assert all(m["ms_640x480"] for m in by_name.values()) and models["live"] in by_name
    r = httpx.post(f"{stack.url}/stylize?style=candy&model=fast", content=_photo()[0],
                   headers={"Content-Type": "image/jpeg"}, timeout=120)
    assert r.status_code == 200, r.text[:500]


def test_burst_of_32_4k_uploads_gets_200_or_503_and_no_oom_kill(stack):
    from PIL import Image

    n = 32
    bodies = _uhd_uploads(4)
    codes: Counter[int] = Counter()
    sizes: set[tuple[int, int]] = set()
    errors: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(n)

    def one(i: int) -> None:
        with httpx.Client(timeout=300) as c:
            start.wait()
            try:
                r = c.post(f"{stack.url}/stylize?style=mosaic", content=bodies[i % len(bodies)],
                           headers={"Content-Type": "image/jpeg"})
            except httpx.HTTPError as e:
                with lock:
                    errors.append(f"{type(e).__name__}: {e}")
                return
            with lock:
                codes[r.status_code] += 1
                if r.status_code == 200:
                    sizes.add(Image.open(io.BytesIO(r.content)).size)

    t0 = time.monotonic()
    run_threads(one, n, pass_index=True)
    stack.step("burst", t0)
    peak = stack.peak_memory()
    stack.burst = {"codes": dict(codes), "peak_mib": peak and round(peak / 2**20)}
    state = stack.inspect()
    assert not errors, errors[:5]
    assert set(codes) <= {200, 503} and codes[200] >= 1, codes
    assert sizes == {UHD}, sizes
    assert state["State"]["OOMKilled"] is False and state["RestartCount"] == 0, state["State"]
    assert state["State"]["Running"], stack.logs()[-3000:]
    assert httpx.get(f"{stack.url}/readyz", timeout=10).status_code == 200
    if peak is not None:
        assert peak < 2 * GIB


def test_healthcheck_turns_healthy(stack):
    # The compose healthcheck's first probe runs 30 s (its interval) after the start.
    deadline = stack.started + 30 + 2 * 35 + 30
    while (health := stack.inspect()["State"]["Health"])["Status"] != "healthy":
        assert health["Status"] != "unhealthy", health["Log"][-3:]
        assert time.monotonic() < deadline, health
        time.sleep(1)
    stack.step("start to healthy", stack.started)


def test_stop_and_down_are_clean(stack):
    t0 = time.monotonic()
    stack.run_compose("stop", "-t", "30", "stylebox")
    stack.step("stop", t0)
    state = stack.inspect()["State"]
    # SIGTERM: readiness off, drain, exit 0, well inside compose's 30 s (no SIGKILL).
    assert state["ExitCode"] == 0 and not state["OOMKilled"], (state, stack.logs()[-2000:])
    t0 = time.monotonic()
    stack.run_compose("down", "-v")
    stack.step("down", t0)
    label = f"label=com.docker.compose.project={stack.project}"
    assert _run("docker", "ps", "-aq", "-f", label).stdout.strip() == ""
    assert _run("docker", "volume", "ls", "-q", "-f", label).stdout.strip() == ""
    stack.cid = ""  # nothing left for the fixture to take down
    print(f"\ncontainer test: image {getattr(stack, 'image_mb', '?')} MB, seconds "
          f"{stack.times}, burst {getattr(stack, 'burst', '?')}")
