"""The OpenAPI contract under every Schemathesis check, run as an outside user runs it:
`st run <url>/openapi.json --checks all` against a live `stylebox serve`, with and without
`STYLEBOX_API_KEY` (with the key, the key is sent, so POST /admin/reload runs too).

`--checks all` includes positive data acceptance (a schema-valid request is not refused),
negative data rejection (a schema-violating one is), status codes, content types, headers
and response bodies against the schema, unsupported methods (405 + Allow), missing required
headers and the stateful checks over the schema's links. Nothing is left out; the one
setting, in schemathesis.toml beside the README, lets POST /stylize answer 415 to valid
data: a schema cannot say "these bytes decode as an image" (the reason is in the file).
Fixed seed, ~40 examples per operation and mode: ~20 s per run on 2 cores.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from stylebox.procs import ROOT, serving

ST = Path(sys.executable).with_name("st")


def _st_run(base: str, *extra: str) -> str:
    # One worker: with two, Schemathesis builds strategies in two threads, and CPython 3.11's
    # ast module keeps one recursion counter for all threads, so Hypothesis printing a lambda
    # (ast.parse) in both at once fails with "SystemError: AST constructor recursion depth
    # mismatch" - on every run once the schema had the /videos operations. Two workers saved
    # nothing on 2 cores (23 s either way).
    cmd = [str(ST), "--config-file", str(ROOT / "schemathesis.toml"), "--no-color", "run",
           f"{base}/openapi.json", "--checks", "all", "--max-examples", "40", "--seed", "7",
           "--workers", "1", *extra]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-6000:]
    return out


def _generated(out: str) -> int:
    m = re.search(r"(\d+) generated, (\d+) passed", out)
    assert m and m.group(1) == m.group(2), out[-3000:]
    return int(m.group(1))


def test_st_run_checks_all_without_a_key(tiny_onnx):
    with serving(tiny_onnx) as base:
        out = _st_run(base)
    # Passing, with one warning: POST /admin/reload is only ever refused (403) without a key.
    assert "failure" not in out.rsplit("SUMMARY", 1)[-1], out[-3000:]
    assert _generated(out) >= 300, out[-3000:]


# The schema declares the two schemes as alternatives (bearer OR X-API-Key), as the server
# treats them. Given `-H "X-API-Key: ..."`, Schemathesis also generates an Authorization
# header, and its ignored_auth check (ST401) takes the first declared scheme (bearer) for the
# credential in use: it calls the 200 "accepted invalid auth" although the X-API-Key was
# right. So that run leaves ignored_auth out; the bearer run keeps it (and proves that no
# key, or a wrong one, is refused on every protected operation).
@pytest.mark.parametrize("header,exclude", [
    ("Authorization: Bearer contract-key", []),
    ("X-API-Key: contract-key", ["--exclude-checks", "ignored_auth"]),
])
def test_st_run_checks_all_with_the_key(tiny_onnx, header, exclude):
    with serving(tiny_onnx, {"STYLEBOX_API_KEY": "contract-key"}) as base:
        out = _st_run(base, "-H", header, *exclude)
        metrics = httpx.get(f"{base}/metrics").text  # public by default
    assert "No issues found" in out, out[-3000:]
    assert _generated(out) >= 300, out[-3000:]
    # The key was accepted: the protected operations ran, the admin reload too.
    for route in ("/stylize", "/styles", "/admin/reload"):
        m = re.search(rf'method="(?:POST|GET)",route="{re.escape(route)}",status="200"}} '
                      r"(\d+)", metrics)
        assert m and float(m.group(1)) >= 1, (route, metrics[-3000:])
