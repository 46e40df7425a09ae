"""FastAPI dependencies: the loaded engine and the settings, from app.state."""

from __future__ import annotations

from fastapi import Request

from service.engine import Engine
from service.errors import NotReadyError
from service.settings import Settings


def get_engine(request: Request) -> Engine:
    engine = getattr(request.app.state, "engine", None)
    if engine is None:
        raise NotReadyError("the model is not loaded yet")
    return engine


def get_settings(request: Request) -> Settings:
    return request.app.state.settings
