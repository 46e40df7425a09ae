"""Deployment files (Dockerfile, docker-compose.yml, .ci/run) and the image's runtime venv.

No Docker engine runs where the tests do, so the files are checked statically and the
container's command is run in a fresh venv built the way the Dockerfile builds /opt/venv.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import httpx
import pytest

from service.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
COMPOSE = (ROOT / "docker-compose.yml").read_text()
CI_RUN = ROOT / ".ci" / "run"


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, comments dropped and `\\` continuations joined."""
    joined = re.sub(r"\\\n", " ", "\n".join(
        ln for ln in text.splitlines() if not ln.lstrip().startswith("#")))
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1].strip())
            for ln in joined.splitlines() if ln.strip()]


INSTR = _instructions(DOCKERFILE)


def _args(name: str) -> list[str]:
    return [a for i, a in INSTR if i == name]


def _final_stage() -> list[tuple[str, str]]:
    starts = [n for n, (i, _) in enumerate(INSTR) if i == "FROM"]
    return INSTR[starts[-1]:]


def test_dockerfile_base_images_pinned_by_tag():
    images = [a.split()[0] for a in _args("FROM")]
    assert len(images) >= 2, "multi-stage: a builder and a final stage"
    for image in images:
        name, _, tag = image.partition(":")
        assert name == "python" and tag and tag != "latest", image
        assert tag.startswith("3.11-"), "the python CI and pyproject target"


def test_dockerfile_runs_as_non_root_and_serves():
    users = [a for i, a in _final_stage() if i == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), users
    health = _args("HEALTHCHECK")
    assert len(health) == 1 and "/readyz" in health[0] and "urllib" in health[0]
    assert _args("CMD") == ['["stylebox", "serve"]']


def test_dockerfile_installs_runtime_deps_only():
    installs = [a for a in _args("RUN") if "pip install" in a]
    assert installs, "the builder stage pip-installs the project"
    for cmd in installs:
        assert "[train" not in cmd and "torch" not in cmd and " -e " not in cmd, cmd
    # pyproject's packages (model*, service*, ...) are all copied in for `pip install .`.
    find = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    copied = " ".join(_args("COPY"))
    for pattern in find["packages"]["find"]["include"]:
        assert f"{pattern.rstrip('*')}/" in copied, pattern
    assert "README.md" in copied and "models/" in copied


def test_stylebox_variables_are_settings_fields():
    fields = set(Settings.model_fields)
    for name, text in (("Dockerfile", DOCKERFILE), ("docker-compose.yml", COMPOSE)):
        names = set(re.findall(r"\bSTYLEBOX_([A-Z0-9_]+)", text))
        assert names, name
        unknown = {n for n in names if n.lower() not in fields}
        assert not unknown, f"{name}: STYLEBOX_{unknown} are not Settings fields"


def test_compose_file():
    assert not re.search(r"(?m)^version:", COMPOSE), "the compose spec has no version key"
    assert re.search(r"(?m)^services:\n  stylebox:\n    build:", COMPOSE)
    assert re.search(r"(?m)^    restart: unless-stopped$", COMPOSE)
    assert re.search(r"(?m)^      test: \[.*/readyz", COMPOSE)
    assert re.search(r"(?m)^      - \./models:/app/models:ro$", COMPOSE)
    # Every environment value defaults to its variable from the shell: ${VAR:-default}.
    env = re.findall(r'(?m)^      (STYLEBOX_\w+): "\$\{(\w+):-[^}]*\}"$', COMPOSE)
    assert len(env) == COMPOSE.count("      STYLEBOX_") >= 4
    assert all(key == var for key, var in env)


def test_ports_agree():
    port = Settings.model_fields["port"].default
    assert _args("EXPOSE") == [str(port)]
    assert f"STYLEBOX_PORT={port}" in " ".join(_args("ENV"))
    assert re.findall(r'(?m)^      - "(\d+):(\d+)"$', COMPOSE) == [(str(port), str(port))]
    assert f"127.0.0.1:{port}/readyz" in COMPOSE


def test_dockerignore_and_models_dir():
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    ignored = {ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")}
    assert {".venv/", ".git/", "tests/", "runs/", "data/", "**/*.pt"} <= ignored
    assert "models/" not in ignored  # the image copies it
    assert (ROOT / "models" / "README.md").is_file()  # so `COPY models/` works before a model


def test_ci_run_script():
    text = CI_RUN.read_text()
    assert os.access(CI_RUN, os.X_OK)
    assert "set -euo pipefail" in text and "make test" in text and "PIPESTATUS" in text


@pytest.mark.parametrize(("output", "code", "ok"), [
    ("===== 5 passed, 1 skipped in 3.21s =====", 0, True),
    ("===== no tests ran in 0.01s =====", 5, False),
    ("===== no tests ran in 0.01s =====", 0, False),  # even if make hid pytest's exit 5
    ("ruff: 1 error", 0, False),  # no summary at all
    ("===== 1 failed, 5 passed in 3.21s =====", 0, False),
    ("===== 5 passed, 1 error in 3.21s =====", 0, False),
    ("===== 5 passed in 3.21s =====", 2, False),
])
def test_ci_run_judges_the_pytest_summary(tmp_path, output, code, ok):
    fake = tmp_path / "make"  # stands in for `make test` on PATH
    fake.write_text(f"#!/bin/sh\necho '{output}'\nexit {code}\n")
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}",
           "TMPDIR": str(tmp_path)}
    r = subprocess.run(["bash", str(CI_RUN)], env=env, capture_output=True, text=True,
                       timeout=30)
    assert output in r.stdout
    assert (r.returncode == 0) == ok, r.stderr
    if code:
        assert r.returncode == code  # make's own status is kept


def test_serving_import_path_imports_no_torch():
    code = ("import sys; import service.app, service.cli, service.engine, stylebox.cli; "
            "assert 'torch' not in sys.modules")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr


# -- the image's /opt/venv, rebuilt here: `pip install .` of what the Dockerfile copies --------

NETWORK_ERRORS = ("NewConnectionError", "Failed to establish a new connection",
                  "Temporary failure in name resolution", "Network is unreachable")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_runtime_venv_serves_without_torch(tmp_path, tiny_onnx):
    src = tmp_path / "src"
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for pkg in ("model", "training", "service", "stylebox"):
        shutil.copytree(ROOT / pkg, src / pkg, ignore=skip)
    venv = tmp_path / "venv"
    bin_ = venv / "bin"
    # The repo must not be importable: a clean env, run from tmp_path.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("STYLEBOX_", "PYTHONPATH", "VIRTUAL_ENV"))}
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    r = subprocess.run([str(bin_ / "pip"), "install", "-q", str(src)], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=600)
    if r.returncode and any(e in r.stdout + r.stderr for e in NETWORK_ERRORS):
        pytest.skip(f"pip cannot reach the package index: {r.stderr[-500:]}")
    assert r.returncode == 0, r.stderr[-3000:]

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=120)

    probe = run(str(bin_ / "python"), "-c", "import service; print(service.__file__); import torch")
    assert probe.stdout.startswith(str(venv)), "the installed copy, not the repo's"
    assert probe.returncode == 1 and "No module named 'torch'" in probe.stderr, probe
    assert run(str(bin_ / "stylebox"), "serve", "--help").returncode == 0
    train = run(str(bin_ / "stylebox"), "train", "--help")  # training/ is installed too:
    assert train.returncode in (0, 2) and "Traceback" not in train.stderr, train  # no crash

    port = _free_port()
    proc = subprocess.Popen(
        [str(bin_ / "stylebox"), "serve", "--host", "127.0.0.1", "--port", str(port)],
        env={**env, "STYLEBOX_MODEL_PATH": str(tiny_onnx)}, cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not become ready"
            time.sleep(0.2)
        r = httpx.get(f"{base}/styles", timeout=10)
        assert r.status_code == 200
        assert [s["name"] for s in r.json()["styles"]] == ["candy", "mosaic", "udnie"]
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
