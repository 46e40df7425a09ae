"""Admission control: bounded concurrency + bounded queue (503 + Retry-After) and the
request deadline (408 for a stalled upload, 503 for work that cannot finish in time).

The inference is made slow on purpose by wrapping a real engine's `stylize`, so the tests
control exactly how many requests are in progress.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import httpx
import pytest

from stylebox.service.backends.ort import OrtEngine
from stylebox.service.http.admission import Admission
from stylebox.service.settings import Settings
from stylebox.service.state import state_of
from tests.conftest import make_app, png


class SlowEngine:
    """A real engine whose inference waits for `release` (or `delay` seconds)."""

    def __init__(self, engine: OrtEngine, delay: float = 10.0) -> None:
        self._engine, self.delay = engine, delay
        self.release = threading.Event()
        self.running = 0

    def __getattr__(self, name: str):
        return getattr(self._engine, name)

    def stylize(self, rgb, weights):
        self.running += 1
        self.release.wait(self.delay)
        return self._engine.stylize(rgb, weights)


async def _post(client: httpx.AsyncClient, content=None, **kw) -> httpx.Response:
    files = None if content is not None else {"image": ("x.png", png())}
    return await client.post("/stylize?style=candy", files=files, content=content, **kw)


def _client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


def test_admission_counts():
    adm = Admission(max_concurrency=2, max_queue=1)
    assert [adm.try_acquire() for _ in range(4)] == [True, True, True, False]
    assert adm.active == 3 and adm.queued == 1
    adm.release()
    assert adm.try_acquire() and not adm.try_acquire()


@asynccontextmanager
async def _posting(c: httpx.AsyncClient, n: int, ready) -> AsyncIterator[list[httpx.Response]]:
    """`n` stylize requests in the background; entered once `ready()` holds. Yields their
    responses, filled in as they finish (all of them by the time the block is left)."""
    results: list[httpx.Response] = []

    async def one() -> None:
        results.append(await _post(c))

    async with anyio.create_task_group() as tg:
        for _ in range(n):
            tg.start_soon(one)
        with anyio.fail_after(10):
            while not ready():
                await anyio.sleep(0.01)
        yield results


@pytest.mark.parametrize("method,path,status", [
    ("POST", "/stylize", 503), ("POST", "/stylize/", 503),  # redirected to /stylize
    ("GET", "/stylize", 405), ("POST", "/stylizex", 404), ("GET", "/healthz", 200),
    ("GET", "/styles", 200),
])
def test_guarded_routes(tiny_onnx, engine, method, path, status):
    """At capacity, only the routes that declare ADMITTED are refused."""
    app = make_app(engine, tiny_onnx)
    state_of(app).admission.active = state_of(app).admission.limit

    async def main():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://t", follow_redirects=True) as c:
            return await c.request(method, f"{path}?style=candy" if "stylize" in path
                                   else path, files={"image": ("x.png", png())}
                                   if method == "POST" else None)

    r = anyio.run(main)
    assert r.status_code == status, r.text
    if status == 503:
        assert r.json()["type"].endswith(":overloaded")


def test_beyond_capacity_and_queue_is_503_with_retry_after(tiny_onnx, engine):
    slow = SlowEngine(engine)
    app = make_app(slow, tiny_onnx, max_concurrency=1, max_queue=2, retry_after_s=7)

    async def main():
        def full() -> bool:  # 1 running + 2 queued
            return state_of(app).admission.active >= 3 and slow.running >= 1

        async with _client(app) as c, _posting(c, 3, full) as results:
            t0 = time.perf_counter()
            extra = [await _post(c) for _ in range(3)]  # answered without waiting
            fast = time.perf_counter() - t0
            health = await c.get("/healthz")  # other routes are not limited
            metrics = (await c.get("/metrics")).text
            slow.release.set()
        return results, extra, fast, health, metrics

    results, extra, fast, health, metrics = anyio.run(main)
    assert [r.status_code for r in results] == [200, 200, 200]
    assert fast < 2.0 and health.status_code == 200
    for r in extra:
        assert r.status_code == 503 and r.headers["retry-after"] == "7"
        assert r.headers["content-type"] == "application/problem+json"
        body = r.json()
        assert body["type"].endswith(":overloaded") and "capacity" in body["detail"]
        assert body["max_concurrency"] == 1 and body["max_queue"] == 2
    assert 'stylebox_rejections_total{reason="overloaded"} 3.0' in metrics
    assert "stylebox_admitted_requests 3.0" in metrics
    assert state_of(app).admission.active == 0  # every slot given back


def test_queued_request_past_its_deadline_is_503(tiny_onnx, engine):
    slow = SlowEngine(engine, delay=1.5)
    app = make_app(slow, tiny_onnx, max_concurrency=1, max_queue=4, request_timeout_s=0.4)

    async def main():
        async with _client(app) as c, _posting(c, 1, lambda: slow.running >= 1) as first:
            t0 = time.perf_counter()
            queued = await _post(c)  # waits for the only inference slot, then times out
            waited = time.perf_counter() - t0
        return first[0], queued, waited

    first, queued, waited = anyio.run(main)
    assert queued.status_code == 503 and waited < 1.2  # at its deadline, not after the work
    body = queued.json()
    assert body["type"].endswith(":timeout") and body["request_timeout_s"] == 0.4
    assert queued.headers["retry-after"] == "2"
    # The running inference is not interrupted; its request still ends with a clean answer.
    assert first.status_code in (200, 503)
    assert state_of(app).admission.active == 0


def test_stalled_upload_is_408(tiny_onnx, engine):
    app = make_app(engine, tiny_onnx, request_timeout_s=0.3)

    async def trickle():
        yield png()[:20]
        await anyio.sleep(2)  # the client stalls mid-body
        yield png()[20:]

    async def main():
        async with _client(app) as c:
            t0 = time.perf_counter()
            r = await _post(c, content=trickle(), headers={"Content-Type": "image/png"})
            return r, time.perf_counter() - t0

    r, took = anyio.run(main)
    assert r.status_code == 408 and took < 1.5
    assert r.json()["type"].endswith(":request-timeout")
    assert state_of(app).admission.active == 0


def test_slots_are_released_after_every_kind_of_answer(tiny_onnx, engine):
    app = make_app(engine, tiny_onnx, max_concurrency=1, max_queue=0, max_upload_bytes=1000)

    async def main():
        async with _client(app) as c:
            statuses = [
                (await c.post("/stylize?style=nope", files={"image": ("x", png())})).status_code,
                (await c.post("/stylize?style=candy", content=b"x" * 2000,
                              headers={"Content-Type": "image/png"})).status_code,
                (await c.post("/stylize?style=candy", content=b"text",
                              headers={"Content-Type": "image/png"})).status_code,
                (await _post(c)).status_code,
                (await _post(c)).status_code,  # capacity 1, queue 0: still fine one by one
            ]
        return statuses

    assert anyio.run(main) == [404, 413, 415, 200, 200]
    assert state_of(app).admission.active == 0


def test_hardening_defaults(monkeypatch):
    for var in ("MAX_QUEUE", "REQUEST_TIMEOUT_S", "RETRY_AFTER_S", "API_KEY", "CORS_ORIGINS",
                "METRICS_PUBLIC", "DRAIN_S", "LOG_FORMAT"):
        monkeypatch.delenv(f"STYLEBOX_{var}", raising=False)
    s = Settings()
    assert (s.max_queue, s.request_timeout_s, s.retry_after_s) == (8, 60.0, 2)
    assert s.api_key is None and s.cors_origins == [] and s.metrics_public
    assert (s.drain_s, s.log_format) == (2.0, "text")
