"""Schemathesis against the app's own OpenAPI schema: every operation, >= 1,000 generated
requests, 0 server errors, and every answer conforming to the schema (status code,
content type, headers, body).

Fixed budget: `derandomize=True` and no example database, so CI runs the same requests
every time (~20 s on 2 cores). Three sources of cases per operation: schema-valid
("positive") requests, schema-violating ("negative") ones, and, for POST /stylize, valid
styles with a real image and fuzzed options, so the success path is fuzzed too.
Here every answer is held to the response checks (CHECKS: no 5xx, and status, content type,
headers and body per the schema), in process and fast; the checks on how requests are
judged (valid data accepted, invalid refused, auth, unsupported methods, the stateful
links) need a live server and run in test_schemathesis.py, `st run --checks all`.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections import Counter
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from stylebox.videobench import make_clip
from tests.conftest import make_client, png
from tests.trainer_fixtures import make_editable_model, run_worker, wait_job

CLIP = make_clip(Path(tempfile.mkdtemp()) / "clip.mp4", 32, 24, 4, 10).read_bytes()
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]
# Examples per (operation, mode); operations without parameters yield 1 distinct request.
BUDGET = {"POST /stylize": 400, "GET /styles/{name}/preview.png": 200}
DEFAULT_BUDGET = 50
MIN_TOTAL = 1000


def _run(strategy, n: int, statuses: Counter) -> int:
    sent = 0

    @settings(max_examples=n, deadline=None, database=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def check(case) -> None:
        nonlocal sent
        response = case.call()
        sent += 1
        statuses[response.status_code] += 1
        case.validate_response(response, checks=CHECKS)

    with contextlib.suppress(Unsatisfiable):  # a parameter-less operation has no negatives
        check()
    return sent


@pytest.fixture(scope="module")
def client(tiny_onnx, engine, tmp_path_factory):
    """conftest's client on its own job folder, with a real `stylebox worker` alive on it:
    with none, the trainer's operations answer 503 at once (a server error here). Room for
    every trainer job POST /optimize's documented example makes (a full queue is a 503)."""
    jobs = tmp_path_factory.mktemp("jobs")
    with run_worker(tiny_onnx, jobs, jobs), \
            make_client(engine, tiny_onnx, video_dir=str(jobs), trainer_max_queue=1000) as c:
        yield c


@pytest.fixture(scope="module")
def schema(client):  # the lifespan runs, as on a server
    return schemathesis.openapi.from_asgi("/openapi.json", client.app)


def test_schemathesis_every_operation_no_server_errors(schema):
    statuses: Counter = Counter()
    per_op: dict[str, int] = {}
    for result in schema.get_all_operations():
        op = result.ok()
        n = BUDGET.get(op.label, DEFAULT_BUDGET)
        sent = 0
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            sent += _run(op.as_strategy(generation_mode=mode), n, statuses)
        if op.label == "POST /stylize":  # a real image and a valid blend; options fuzzed
            sent += _run(op.as_strategy(body={"image": png(12, 16, seed=1)},
                                        media_type="multipart/form-data",
                                        query={"style": "candy:0.3,udnie"}), 100, statuses)
        if op.label == "POST /videos":  # a real clip, options fuzzed; no more jobs than the
            # default queue holds (1 running + 4 queued), as its 503 counts as a server error
            sent += _run(op.as_strategy(body={"video": CLIP}, media_type="multipart/form-data",
                                        query={"style": "mosaic"}), 5, statuses)
        per_op[op.label] = sent
    assert {"POST /stylize", "GET /styles", "GET /healthz", "GET /metrics"} <= set(per_op)
    assert all(n >= 1 for n in per_op.values()), per_op
    assert sum(statuses.values()) >= MIN_TOTAL, (per_op, statuses)
    assert not any(s >= 500 for s in statuses), statuses
    assert statuses[200] > 50 and statuses[422] > 50 and statuses[404] > 50, statuses
    assert statuses[202] >= 1, statuses  # a video job was queued


def test_schemathesis_with_an_api_key_every_refusal_conforms(tiny_onnx, engine):
    """With STYLEBOX_API_KEY set and no key sent: 401s as documented, open paths still 200."""
    statuses: Counter = Counter()
    with make_client(engine, tiny_onnx, api_key="k") as c:  # the lifespan runs for the whole fuzz
        schema = schemathesis.openapi.from_asgi("/openapi.json", c.app)
        for result in schema.get_all_operations():
            op = result.ok()
            _run(op.as_strategy(generation_mode=GenerationMode.POSITIVE), 20, statuses)
    assert statuses[401] >= 20 and statuses[200] >= 3, statuses  # healthz, readyz, metrics
    assert not any(s >= 500 for s in statuses), statuses


JOB_OPS = ("GET /jobs/{job_id}", "GET /jobs/{job_id}/preview", "GET /jobs/{job_id}/result",
           "POST /jobs/{job_id}/cancel")


def _on_job(ops: dict, job_id: str, labels: tuple[str, ...]) -> dict[str, Counter]:
    """Each operation of `labels` fuzzed (valid requests) on job `job_id`: status counts."""
    seen: dict[str, Counter] = {}
    for label in labels:
        seen[label] = Counter()
        assert _run(ops[label].as_strategy(path_parameters={"job_id": job_id},
                                           generation_mode=GenerationMode.POSITIVE),
                    5, seen[label]) >= 1
    return seen


def test_the_job_operations_conform_on_real_jobs(tmp_path):
    """The job operations on jobs that exist (the fuzz above mostly meets unknown ids): a
    finished optimize job (status, preview, result; cancel leaves it as it was), a long one
    cancelled (queued or running), then both deleted: from then on every operation answers
    404, as documented."""
    model, data = make_editable_model(tmp_path)
    jobs = tmp_path / "jobs"
    photo = {"photo": ("a.png", png(80, 96, seed=2), "image/png")}
    with make_client(None, model, video_dir=str(jobs)) as c:
        ops = {r.ok().label: r.ok() for r in
               schemathesis.openapi.from_asgi("/openapi.json", c.app).get_all_operations()}
        with run_worker(model, jobs, data):  # with none alive, POST /optimize is a 503
            done = c.post("/optimize?style=checker&max_side=64&iterations=4", files=photo).json()
            queued = c.post("/optimize?style=checker&iterations=5000", files=photo).json()
            assert wait_job(c, f"/jobs/{done['id']}", {"done", "failed"})["state"] == "done"
            seen = _on_job(ops, done["id"], JOB_OPS)
            assert all(set(seen[op]) == {200} for op in JOB_OPS), seen
            assert c.get(f"/jobs/{done['id']}").json()["state"] == "done"  # cancel: as it was
            seen = _on_job(ops, queued["id"], ("POST /jobs/{job_id}/cancel",
                                                "GET /jobs/{job_id}"))
            assert set(seen["POST /jobs/{job_id}/cancel"]) == {200}, seen
            assert c.get(f"/jobs/{queued['id']}").json()["state"] == "cancelled"
            for job in (done, queued):
                seen = _on_job(ops, job["id"], ("DELETE /jobs/{job_id}", *JOB_OPS))
                assert set(seen["DELETE /jobs/{job_id}"]) <= {204, 404}, seen
                assert seen["DELETE /jobs/{job_id}"][204] == 1, seen
                assert all(set(seen[op]) == {404} for op in JOB_OPS), seen
