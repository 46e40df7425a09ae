"""Write Dockerfile.cpu: the Dockerfile's CPU image alone, for builders without BuildKit.

The legacy builder (docker-compose 1.x, a Docker engine without buildx) builds every stage of
a Dockerfile up to the last one, whatever TARGET says, so building the CPU image from the
Dockerfile would also pull the CUDA and Jetson bases and run their steps. Dockerfile.cpu is
the same file without those stages (same steps, same arguments, same image), so any builder,
online or offline, makes the CPU image from it:

    docker build -f Dockerfile.cpu -t stylebox:cpu .

Edit the Dockerfile, never Dockerfile.cpu, then run `python deploy/dockerfile_cpu.py` (make
test fails while Dockerfile.cpu differs from what this writes).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEEP = {"source", "build-cpu", "runtime-cpu", ""}  # "" = the final, unnamed stage
HEADER = """\
# GENERATED from Dockerfile by deploy/dockerfile_cpu.py: edit the Dockerfile, then run
# `python deploy/dockerfile_cpu.py`. The Dockerfile's CPU image (TARGET=cpu) without the CUDA
# and Jetson stages, for builders without BuildKit (docker-compose 1.x, Docker without
# buildx), which would build every stage of the Dockerfile:
#   docker build -f Dockerfile.cpu -t stylebox:cpu .
# Offline, from a local base and the wheelhouse deploy/wheels/ (README "Deployment"):
#   docker build -f Dockerfile.cpu --build-arg CPU_BASE=stylebox-base:bookworm \\
#     --build-arg PIP_OFFLINE=1 -t stylebox:cpu .
"""


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


def cpu_dockerfile(text: str) -> str:
    chunks = _chunks(text.splitlines())
    # Before the first stage: the build arguments after TARGET (always cpu here), with their
    # comments; the Dockerfile's own header is replaced by HEADER.
    head = chunks[0][1]
    preamble = head[next(i for i, ln in enumerate(head) if ln.startswith("ARG TARGET=")) + 1:]
    body: list[str] = []
    for name, lines in chunks[1:]:
        if name in KEEP:
            body += [ln.replace("FROM runtime-${TARGET}", "FROM runtime-cpu") for ln in lines]
    return HEADER + "\n".join(preamble + body).rstrip("\n") + "\n"


def main() -> int:
    out = ROOT / "Dockerfile.cpu"
    out.write_text(cpu_dockerfile((ROOT / "Dockerfile").read_text()))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
