"""The OpenAPI contract under every Schemathesis check, run as an outside user runs it:
`st run <url>/openapi.json --checks all` against a live `stylebox serve`, with and without
`STYLEBOX_API_KEY` (with the key, the key is sent, so POST /admin/reload runs too).

`--checks all` includes positive data acceptance (a schema-valid request is not refused),
negative data rejection (a schema-violating one is), status codes, content types, headers
and response bodies against the schema, unsupported methods (405 + Allow), missing required
headers and the stateful checks over the schema's links (POST /videos links to its job's
operations: status, result, cancel, delete), use_after_free among them (after DELETE
/videos/{id} every operation on the job is a 404). No check is left out and none has its
expected statuses widened: schemathesis.toml, beside the README, only loads
tests/service/schemathesis_hooks.py, which gives every upload media type real files (a
schema cannot say "these bytes decode as an image of 64 px or more", or "a video") and sends
each multipart case as what it is on the wire (docs/reliability.md).
Fixed seed, ~40 examples per operation and mode: ~1,500 requests, ~60-90 s per run on 2
busy cores.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from stylebox.procs import ROOT, serving
from tests.trainer_fixtures import fresh_model, make_editable_model, run_worker

ST = Path(sys.executable).with_name("st")


def _st_run(base: str, log: Path, *extra: str) -> str:
    # One worker: with two, Schemathesis builds strategies in two threads, and CPython 3.11's
    # ast module keeps one recursion counter for all threads, so Hypothesis printing a lambda
    # (ast.parse) in both at once fails with "SystemError: AST constructor recursion depth
    # mismatch" - on every run once the schema had the /videos operations. Two workers saved
    # nothing on 2 cores (23 s either way).
    cmd = [str(ST), "--config-file", str(ROOT / "schemathesis.toml"), "--no-color", "run",
           f"{base}/openapi.json", "--checks", "all",
           "--max-examples", "40", "--seed", "7", "--workers", "1", *extra]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    out = r.stdout + r.stderr
    # The server's log too: a server that stopped answering left its reason there.
    assert r.returncode == 0, f"{out[-6000:]}\n--- server log ---\n{log.read_text()[-4000:]}"
    return out


def _generated(out: str) -> int:
    m = re.search(r"(\d+) generated, (\d+) passed", out)
    assert m and m.group(1) == m.group(2), out[-3000:]
    return int(m.group(1))


def _warnings(summary: str) -> list[str]:
    return re.findall(r"⚠️ (.+)", summary)


def _videos(tmp_path) -> dict[str, str]:
    # Its own job folder, and room for every job the run makes (every valid upload to POST
    # /videos is a clip, and POST /optimize's valid data makes trainer jobs): the contract
    # is under test here, not the queues' bounds.
    return {"STYLEBOX_VIDEO_DIR": str(tmp_path / "videos"), "STYLEBOX_VIDEO_MAX_QUEUE": "256",
            "STYLEBOX_TRAINER_MAX_QUEUE": "256"}


@pytest.fixture(scope="module")
def editable(tmp_path_factory) -> tuple[Path, Path]:
    """(model, data): a tiny model with its checkpoint, and the random-weight VGG and photos
    a worker trains with (tests/trainer_fixtures.py)."""
    return make_editable_model(tmp_path_factory.mktemp("editable"))


@contextlib.contextmanager
def _worker(model, data, tmp_path):
    """A real `stylebox worker` on the run's job folder: with none, the trainer's operations
    answer 503 at once (and a 5xx fails the run). POST /styles and POST /optimize get real
    images (the hooks), so they make real jobs that run and finish on this worker (its VGG
    is random, its checkpoint tiny); the stateful phase reaches them through the 202's links
    (test_fuzz_api.py holds every job operation to the schema on finished, cancelled and
    deleted jobs)."""
    with run_worker(model, tmp_path / "videos", data):
        yield


# What Schemathesis warns about, and why each is expected: the trainer's job operations are
# mostly called with ids that no job has (generated, or a job already deleted: 404s), and
# DELETE /styles/{name} with names that no style has (POST /styles makes its style under a
# generated name, and no link can carry that name to it). Any other warning, or these on
# another operation, fails; _made_jobs checks that real jobs were made.
JOB_OPS = {"DELETE /jobs/{job_id}", "GET /jobs/{job_id}", "GET /jobs/{job_id}/preview",
           "GET /jobs/{job_id}/result", "POST /jobs/{job_id}/cancel"}
EXPECTED_WARNINGS = {"Missing test data": JOB_OPS | {"DELETE /styles/{name}"}}


def _warned(out: str) -> dict[str, set[str]]:
    """Each warning of the WARNINGS section, with the operations it lists."""
    section = out.rsplit("WARNINGS ===", 1)[-1].split("SUMMARY ===", 1)[0] \
        if "WARNINGS ===" in out else ""
    found: dict[str, set[str]] = {}
    title = None
    for line in section.splitlines():
        m = re.match(r"([A-Z][a-z]+(?: [a-z]+)*): \d+ operations?", line.strip())
        if m:
            title = m.group(1)
            found.setdefault(title, set())
        elif title and (op := re.match(r"\s+- ([A-Z]+ /\S*)", line)):
            found[title].add(op.group(1))
    return found


def _only_expected(out: str, auth: set[str]) -> None:
    """Every warning is one EXPECTED_WARNINGS explains (or the auth one, on `auth`'s ops)."""
    allowed = {**EXPECTED_WARNINGS, "Authentication failed": auth}
    for title, ops in _warned(out).items():
        assert title in allowed and ops <= allowed[title], (title, ops, out[-3000:])


def _made_jobs(metrics: str) -> None:
    """POST /optimize accepted valid data (202) at least once."""
    m = re.search(r'method="POST",route="/optimize",status="202"} (\d+)', metrics)
    assert m and float(m.group(1)) >= 1, metrics[-3000:]


def test_st_run_checks_all_without_a_key(editable, tmp_path):
    model = fresh_model(editable[0], tmp_path)  # this run's style edits change it
    with serving(model, _videos(tmp_path), log=tmp_path / "serve.log") as base, \
            _worker(model, editable[1], tmp_path):
        out = _st_run(base, tmp_path / "serve.log")
        _made_jobs(httpx.get(f"{base}/metrics").text)
    # Passing; POST /admin/reload and the style edits are only ever refused (403) without a
    # key; the expected warnings (EXPECTED_WARNINGS).
    summary = out.rsplit("SUMMARY", 1)[-1]
    assert "failure" not in summary and "Errors:" not in summary, out[-3000:]
    admin = {"POST /admin/reload", "POST /styles", "DELETE /styles/{name}"}
    assert _warned(out)["Authentication failed"] == admin, out[-3000:]
    _only_expected(out, admin)
    assert _generated(out) >= 300, out[-3000:]


# Both schemes, every check: given `-H "X-API-Key: ..."` Schemathesis also sends a wrong
# `Authorization` header (ignored_auth, ST401), which the server refuses, since every
# credential a request presents must be the key.
@pytest.mark.parametrize("header", ["Authorization: Bearer contract-key",
                                    "X-API-Key: contract-key"])
def test_st_run_checks_all_with_the_key(editable, header, tmp_path):
    model = fresh_model(editable[0], tmp_path)  # this run's style edits change it
    with serving(model, {"STYLEBOX_API_KEY": "contract-key", **_videos(tmp_path)},
                 log=tmp_path / "serve.log") as base, _worker(model, editable[1], tmp_path):
        out = _st_run(base, tmp_path / "serve.log", "-H", header)
        metrics = httpx.get(f"{base}/metrics").text  # public by default
    _made_jobs(metrics)
    # No failure, no error and no warning but the expected ones: no operation is
    # "authentication failed" (every one accepted the key).
    summary = out.rsplit("SUMMARY", 1)[-1]
    assert "Failures:" not in summary and "Errors:" not in summary, out[-3000:]
    _only_expected(out, set())
    assert _generated(out) >= 300, out[-3000:]
    # The key was accepted: the protected operations ran, the admin reload too.
    for route in ("/stylize", "/styles", "/admin/reload"):
        m = re.search(rf'method="(?:POST|GET)",route="{re.escape(route)}",status="200"}} '
                      r"(\d+)", metrics)
        assert m and float(m.group(1)) >= 1, (route, metrics[-3000:])
