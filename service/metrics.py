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
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from fastapi import APIRouter, Request, Response
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

from stylebox.service.access import Access, mark
from stylebox.service.admission import Admission

# The `*_created` timestamp series double the output and no dashboard uses them.
disable_created_metrics()
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Seconds: a 16 px icon on a warm CPU up to a 40 MP photo queued behind others.
_REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_INFERENCE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class _EngineInfo:
    """Which engine and precision serve, read at scrape time (a reload can swap them)."""

    def __init__(self, engine: Callable[[], Any]) -> None:
        self.engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("stylebox_engine_info", "The engine and precision serving",
                                   labels=["engine", "precision", "model"])
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
        if admission is not None:
            admitted.set_function(lambda: admission.active)
            live.set_function(lambda: admission.live)
        if engine is not None:
            r.register(_EngineInfo(engine))

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


router = APIRouter(tags=["operations"])


@router.get("/metrics", summary="Prometheus metrics (text exposition format)",
            response_class=Response,
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                             "description": "metrics in Prometheus text format"}})
@mark(Access.METRICS)
def metrics(request: Request) -> Response:
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
