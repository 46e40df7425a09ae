"""Liveness (`/healthz`, always 200) and readiness (`/readyz`, 200 once the model is loaded)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from stylebox.service.deps import get_engine
from stylebox.service.http.access import Access, guard
from stylebox.service.http.errors import NotReadyError
from stylebox.service.state import StateDep

# Open: orchestrators and load balancers probe without credentials.
router = APIRouter(tags=["health"], dependencies=[guard(Access.PROBE)])


@router.get("/healthz", summary="Liveness: the process answers")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: the model is loaded",
            responses={503: {"description": "model not loaded, or shutting down"}})
def readyz(state: StateDep) -> dict[str, Any]:
    engine = get_engine(state)  # 503 + Retry-After until the model is loaded
    if state.draining:  # in-flight work finishes; no new work
        raise NotReadyError("the server is shutting down", state.settings.retry_after_s)
    return {"status": "ready", "model": engine.card.name, "version": engine.card.version,
            "engine": engine.backend, "precision": engine.precision,
            "providers": engine.providers}

