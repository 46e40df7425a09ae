"""A bounded load run against the real service: uvicorn on 127.0.0.1, httpx clients.

`serving()` starts `stylebox serve` in a subprocess (its own interpreter, so the service's
threads are not the benchmark's) and waits for /readyz; `load_run()` sends a fixed number
of JPEG requests from `concurrency` client threads and reports images/s, latency, 503s
(admission control saying "busy") and the share of each request spent outside inference
(client latency minus the server's `X-Stylebox-Inference-Ms`: upload, parse, decode,
encode, HTTP; an upper bound, since the client shares the machine).
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from stylebox import procs


@dataclass
class LoadResult:
    variant: str
    size: str
    concurrency: int
    requests: int
    ok: int
    busy: int  # 503 answers (queue full / overloaded)
    failed: int  # any other non-200
    wall_s: float
    p50_ms: float
    p90_ms: float
    inference_ms: float  # median of the server's X-Stylebox-Inference-Ms
    outside_share: float  # median of (latency - inference) / latency, over 200s
    outside_ratio: float  # median of (latency - inference) / inference: the target

    @property
    def images_per_s(self) -> float:
        return self.ok / self.wall_s if self.wall_s else 0.0


def percentile(xs: list[float], q: float) -> float:
    """The q-quantile (0..1) by rank, no interpolation: nan for no samples."""
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def run_threads(target: Callable[..., None], n: int, *, pass_index: bool = False) -> None:
    """Start `n` threads on `target` (given its index 0..n-1 with `pass_index`), join all."""
    threads = [threading.Thread(target=target, args=(i,) if pass_index else ())
               for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


@contextmanager
def serving(model: Path, env: dict[str, str] | None = None,
            timeout_s: float = 120.0) -> Iterator[str]:
    """Run `stylebox serve` on a free port for the block (access log on, as in production)."""
    with procs.serving(model, env, timeout_s, log_level="info") as base:
        yield base


def load_run(base: str, body: bytes, size: str, concurrency: int, requests: int,
             variant: str = "default", warmup: int = 2) -> LoadResult:
    """`requests` POST /stylize (JPEG in, JPEG out) from `concurrency` threads."""
    import httpx

    style = httpx.get(f"{base}/styles", timeout=10).json()["styles"][0]["name"]
    url = f"{base}/stylize?style={style}&format=jpeg&quality=90"
    headers = {"Content-Type": "image/jpeg"}
    with httpx.Client(timeout=300) as c:
        for _ in range(warmup):  # first runs at a size plan memory; not part of the load
            c.post(url, content=body, headers=headers).raise_for_status()
    lock = threading.Lock()
    todo = [requests]
    lat: list[float] = []
    outside: list[float] = []
    ratio: list[float] = []
    inf: list[float] = []
    codes: list[int] = []

    def client() -> None:
        with httpx.Client(timeout=300) as c:
            while True:
                with lock:
                    if todo[0] == 0:
                        return
                    todo[0] -= 1
                t0 = time.perf_counter()
                r = c.post(url, content=body, headers=headers)
                ms = (time.perf_counter() - t0) * 1000
                with lock:
                    codes.append(r.status_code)
                    if r.status_code == 200:
                        lat.append(ms)
                        i_ms = float(r.headers["X-Stylebox-Inference-Ms"])
                        inf.append(i_ms)
                        outside.append(max(0.0, ms - i_ms) / ms)
                        ratio.append(max(0.0, ms - i_ms) / max(i_ms, 1e-3))

    t0 = time.perf_counter()
    run_threads(client, concurrency)
    wall = time.perf_counter() - t0

    def med(xs: list[float]) -> float:
        return statistics.median(xs) if xs else float("nan")

    return LoadResult(
        variant, size, concurrency, requests, codes.count(200), codes.count(503),
        sum(c not in (200, 503) for c in codes), wall, med(lat), percentile(lat, 0.9),
        med(inf), med(outside), med(ratio))
