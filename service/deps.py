"""FastAPI dependencies: the two fields of the app's state (service/state.py, `StateDep`)
that most routes want, the loaded engine and the settings, and the model a request names
with `?model=NAME` (`get_model`: several models may be served, service/models.py). (Every
route's first dependency, its router's access guard with the API key and the unknown-query
check, is service/http/access.py's.)"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query

from stylebox.service.engine import Engine
from stylebox.service.http.errors import NotReadyError, UnknownModelError
from stylebox.service.settings import DEFAULT_MODEL, Settings
from stylebox.service.state import ServiceState, StateDep

# For the `responses` of every route that depends on get_engine (service/http/openapi.py adds
# the problem+json body and the Retry-After header to every 503).
NOT_READY: dict[int | str, dict] = {503: {"description": "the model is not loaded yet"}}

def get_engine(state: StateDep) -> Engine:
    """The engine serving now (503 + Retry-After until the model is loaded); a request keeps
    the one it got to its end, whatever a reload swaps in meanwhile."""
    if state.engine is None:
        raise NotReadyError("the model is not loaded yet", state.settings.retry_after_s)
    return state.engine


def get_settings(state: StateDep) -> Settings:
    return state.settings


# For the `responses` of every route that takes `?model=` (besides NOT_READY's 503).
UNKNOWN_MODEL: dict[int | str, dict] = {
    404: {"description": "unknown model (the body lists the served ones)"}}
MODEL_QUERY = ("which served model (GET /models lists them); absent: the default model "
               "(STYLEBOX_MODEL_PATH)")


@dataclass(frozen=True)
class Model:
    """A served model as a request chose it: its name and the engine it keeps to its end."""

    name: str
    engine: Engine


def known_model(state: ServiceState, name: str) -> str:
    """`name`, if this server serves a model by that name; else 404 (UnknownModelError,
    listing the served names)."""
    if name not in state.served:
        raise UnknownModelError(name[:64], state.served)
    return name


def served_model(state: ServiceState, name: str) -> Model:
    """Model `name`: 404 (UnknownModelError, listing the served names) when no such model is
    served, 503 + Retry-After while it is not loaded."""
    known_model(state, name)
    engine = state.engines.get(name)
    if engine is None:
        raise NotReadyError("the model is not loaded yet", state.settings.retry_after_s)
    return Model(name, engine)


def get_model(state: StateDep, model: Annotated[str | None, Query(
        description=MODEL_QUERY)] = None) -> Model:
    """The dependency of the routes that serve any model: `?model=NAME`, or the default."""
    return served_model(state, DEFAULT_MODEL if model is None else model)


def get_model_engine(chosen: Annotated[Model, Depends(get_model)]) -> Engine:
    """`get_model`'s engine, for the routes that need no more."""
    return chosen.engine
