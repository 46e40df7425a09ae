"""Prometheus metrics (`GET /metrics`, text exposition format), one registry per app.

A registry per app (not the process-global default) so several apps in one process - the
tests make many - never collide. Label values are bounded: `route` is the route *template*
(`/styles/{name}/preview.png`) or `unmatched`, `method` one of the standard verbs or
`other`, and `reason` a problem type slug - so a fuzzer hitting random paths cannot grow
the series without bound.

stylebox_http_requests_total{method,route,status}     requests answered
stylebox_http_request_duration_seconds{method,route}  whole-request latency (histogram)
stylebox_inference_duration_seconds                   network time per stylize (histogram)
stylebox_http_requests_in_flight                      requests being handled now
stylebox_admitted_requests                            guarded requests running or queued
stylebox_rejections_total{reason}                     4xx/503 answers by problem type
stylebox_http_request_bytes_total{route}              request body bytes read
stylebox_http_response_bytes_total{route}             response body bytes sent
stylebox_engine_info{engine,precision,model}           1 for the engine serving now
stylebox_live_sessions                                WebSocket /live sessions open
stylebox_live_frames_total{outcome}                   live frames: stylized, dropped, error
                                                      (their sum: the frames received)
stylebox_video_jobs{state}                            this server's video jobs: queued, running
stylebox_video_jobs_finished_total{outcome}           video jobs this server ended: done,
                                                      failed, cancelled (deleted included)
stylebox_video_frames_total                           video frames stylized by this server

The live series are counted by service/routers/live.py (sessions: admission's count), the
video ones by service/jobs.py (VideoJobs); every outcome is there from the start, at 0.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from fastapi import APIRouter, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily

from stylebox.service.http.access import Access, guard
from stylebox.service.http.admission import Admission
from stylebox.service.jobs import ACTIVE, OUTCOMES
from stylebox.service.state import StateDep

# The `*_created` timestamp series double the output and no dashboard uses them.
disable_created_metrics()
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Seconds: a 16 px icon on a warm CPU up to a 40 MP photo queued behind others.
_REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_INFERENCE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
LIVE_OUTCOMES = ("stylized", "dropped", "error")  # what becomes of each live frame received


class _EngineInfo:
    """Which engine and precision serve, read at scrape time (a reload can swap them)."""

    def __init__(self, engine: Callable[[], Any]) -> None:
        self.engine = engine

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily("stylebox_engine_info", "The engine and precision serving",
                                 labels=["engine", "precision", "model"])

    def describe(self) -> Iterator[GaugeMetricFamily]:
        """The series' name, for the registry: without asking for the engine, which the
        app's state (its getter's source) may not hold yet."""
        yield self._family()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = self._family()
        engine = self.engine()
        if engine is not None:
            family.add_metric([engine.backend, engine.precision, engine.card.name], 1)
        yield family


class Metrics:
    def __init__(self, admission: Admission | None = None,
                 engine: Callable[[], Any] | None = None) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("stylebox_http_requests", "HTTP requests answered",
                                ["method", "route", "status"], registry=r)
        self.request_seconds = Histogram(
            "stylebox_http_request_duration_seconds", "Whole-request latency",
            ["method", "route"], buckets=_REQUEST_BUCKETS, registry=r)
        self.inference_seconds = Histogram(
            "stylebox_inference_duration_seconds", "Network time per stylized image",
            buckets=_INFERENCE_BUCKETS, registry=r)
        self.in_flight = Gauge("stylebox_http_requests_in_flight",
                               "HTTP requests being handled", registry=r)
        self.rejections = Counter("stylebox_rejections", "4xx and 503 answers by reason",
                                  ["reason"], registry=r)
        self.request_bytes = Counter("stylebox_http_request_bytes", "Request body bytes read",
                                     ["route"], registry=r)
        self.response_bytes = Counter("stylebox_http_response_bytes",
                                      "Response body bytes sent", ["route"], registry=r)
        admitted = Gauge("stylebox_admitted_requests",
                         "Guarded (inference) requests running or queued", registry=r)
        live = Gauge("stylebox_live_sessions", "WebSocket /live sessions open", registry=r)
        # One outcome per frame a live session receives: stylized, dropped (one was already
        # in flight), or error (refused with an error message).
        self.live_frames = Counter("stylebox_live_frames", "Live frames received, by outcome",
                                   ["outcome"], registry=r)
        for outcome in LIVE_OUTCOMES:
            self.live_frames.labels(outcome)
        # Video jobs: this server's (a job is counted by the replica that runs it).
        self.video_jobs = Gauge("stylebox_video_jobs", "Video jobs on this server, by state",
                                ["state"], registry=r)
        self.video_jobs_finished = Counter(
            "stylebox_video_jobs_finished", "Video jobs this server ended, by outcome",
            ["outcome"], registry=r)
        for outcome in OUTCOMES:
            self.video_jobs_finished.labels(outcome)
        self.video_frames = Counter("stylebox_video_frames", "Video frames stylized",
                                    registry=r)
        self.watch_videos(dict)
        if admission is not None:
            admitted.set_function(lambda: admission.active)
            live.set_function(lambda: admission.live)
        if engine is not None:
            r.register(_EngineInfo(engine))

    def watch_videos(self, counts: Callable[[], Mapping[str, int]]) -> None:
        """Read `stylebox_video_jobs` from `counts()` (jobs by state) at scrape time."""
        for state in sorted(ACTIVE):
            self.video_jobs.labels(state).set_function(
                lambda state=state: counts().get(state, 0))

    def observe(self, *, method: str, route: str, status: int, seconds: float,
                bytes_in: int, bytes_out: int, reason: str | None,
                inference_s: float | None) -> None:
        method = method if method in _METHODS else "other"
        self.requests.labels(method, route, str(status)).inc()
        self.request_seconds.labels(method, route).observe(seconds)
        self.request_bytes.labels(route).inc(bytes_in)
        self.response_bytes.labels(route).inc(bytes_out)
        if reason is not None:
            self.rejections.labels(reason).inc()
        if inference_s is not None:
            self.inference_seconds.observe(inference_s)

    def render(self) -> bytes:
        return generate_latest(self.registry)


# Open while metrics_public (the default), else keyed.
router = APIRouter(tags=["operations"], dependencies=[guard(Access.METRICS)])


@router.get("/metrics", summary="Prometheus metrics (text exposition format)",
            response_class=Response,
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                             "description": "metrics in Prometheus text format"}})
def metrics(state: StateDep) -> Response:
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
