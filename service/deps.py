"""FastAPI dependencies: the two fields of the app's state (service/state.py, `StateDep`)
that most routes want, the loaded engine and the settings. (Every route's first
dependency, its router's access guard with the API key and the unknown-query check, is
service/http/access.py's.)"""

from __future__ import annotations

from stylebox.service.engine import Engine
from stylebox.service.http.errors import NotReadyError
from stylebox.service.settings import Settings
from stylebox.service.state import StateDep

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
