"""Write Dockerfile.cpu and Dockerfile.worker: the Dockerfile's CPU image alone, and its
trainer worker's image alone, for builders without BuildKit.

The legacy builder (docker-compose 1.x, a Docker engine without buildx) builds every stage of
a Dockerfile up to the last one, whatever TARGET says, so building the CPU image from the
Dockerfile would also pull the CUDA and Jetson bases and run their steps (and install torch
for the worker). Dockerfile.cpu is the same file with only the CPU image's stages (same
steps, same arguments, same image), Dockerfile.worker with only the worker's, so any builder,
online or offline, makes each from its file:

    docker build -f Dockerfile.cpu -t stylebox:cpu .
    docker build -f Dockerfile.worker -t stylebox:worker .

Edit the Dockerfile, never the generated files, then run `python deploy/dockerfile_cpu.py`
(make test fails while either differs from what this writes).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The stages each generated file keeps ("" = the final, unnamed stage), and its header.
KEEP = {"cpu": {"source", "build-cpu", "runtime-cpu", ""},
        "worker": {"source", "build-worker", "runtime-worker", ""}}
HEADERS = {"cpu": """\
# GENERATED from Dockerfile by deploy/dockerfile_cpu.py: edit the Dockerfile, then run
# `python deploy/dockerfile_cpu.py`. The Dockerfile's CPU image (TARGET=cpu) without the CUDA
# and Jetson stages, for builders without BuildKit (docker-compose 1.x, Docker without
# buildx), which would build every stage of the Dockerfile:
#   docker build -f Dockerfile.cpu -t stylebox:cpu .
# Offline, from a local base and the wheelhouse deploy/wheels/ (README "Deployment"):
#   docker build -f Dockerfile.cpu --build-arg CPU_BASE=stylebox-base:bookworm \\
#     --build-arg PIP_OFFLINE=1 -t stylebox:cpu .
""", "worker": """\
# GENERATED from Dockerfile by deploy/dockerfile_cpu.py: edit the Dockerfile, then run
# `python deploy/dockerfile_cpu.py`. The Dockerfile's trainer worker image (TARGET=worker:
# `stylebox worker`, torch on CPU) without the other images' stages, for builders without
# BuildKit (docker-compose 1.x, Docker without buildx), which would build every stage:
#   docker build -f Dockerfile.worker -t stylebox:worker .
# Offline: as Dockerfile.cpu, with the train extra in the wheelhouse (README "Deployment").
"""}
HEADER = HEADERS["cpu"]
OUTPUTS = {"cpu": "Dockerfile.cpu", "worker": "Dockerfile.worker"}


def _chunks(lines: list[str]) -> list[tuple[str | None, list[str]]]:
    """(stage name, lines) per FROM, each with the comment lines right above it; the lines
    before the first of them come first, with the name None."""
    starts = []
    for i, line in enumerate(lines):
        if re.match(r"FROM\s", line, re.I):
            j = i
            while j > 0 and lines[j - 1].startswith("#"):
                j -= 1
            words = line.split()
            starts.append((j, words[3] if len(words) == 4 and words[2].upper() == "AS" else ""))
    out: list[tuple[str | None, list[str]]] = [(None, lines[:starts[0][0]])]
    for n, (start, name) in enumerate(starts):
        end = starts[n + 1][0] if n + 1 < len(starts) else len(lines)
        out.append((name, lines[start:end]))
    return out


def legacy_dockerfile(text: str, target: str) -> str:
    """The Dockerfile with only `target`'s stages (KEEP), TARGET fixed to it."""
    chunks = _chunks(text.splitlines())
    # Before the first stage: the build arguments after TARGET (fixed here), with their
    # comments; the Dockerfile's own header is replaced by the target's.
    head = chunks[0][1]
    preamble = head[next(i for i, ln in enumerate(head) if ln.startswith("ARG TARGET=")) + 1:]
    body: list[str] = []
    for name, lines in chunks[1:]:
        if name in KEEP[target]:
            body += [ln.replace("FROM runtime-${TARGET}", f"FROM runtime-{target}")
                     for ln in lines]
    return HEADERS[target] + "\n".join(preamble + body).rstrip("\n") + "\n"


def cpu_dockerfile(text: str) -> str:
    return legacy_dockerfile(text, "cpu")


def worker_dockerfile(text: str) -> str:
    return legacy_dockerfile(text, "worker")


def main() -> int:
    text = (ROOT / "Dockerfile").read_text()
    for target, name in OUTPUTS.items():
        out = ROOT / name
        out.write_text(legacy_dockerfile(text, target))
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
