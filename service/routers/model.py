"""`GET /model`: a served model's card (styles, architecture, training, export facts) and
the runtime serving it (engine, precision, the precision check); `?model=NAME` picks one of
several. `GET /models`: every served model in short, with its time for a 640 x 480 frame and
which one serves by default and live (service/models.py)."""

from __future__ import annotations

from typing import Annotated, Any

from anyio import to_thread
from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from stylebox.service.deps import NOT_READY, UNKNOWN_MODEL, get_model_engine, served_model
from stylebox.service.engine import Engine
from stylebox.service.http.access import Access, guard
from stylebox.service.models import measure
from stylebox.service.settings import DEFAULT_MODEL
from stylebox.service.state import StateDep

router = APIRouter(tags=["model"], responses=NOT_READY, dependencies=[guard(Access.KEYED)])


@router.get("/model", summary="The model card", responses=UNKNOWN_MODEL)
def model_card(engine: Annotated[Engine, Depends(get_model_engine)]) -> dict[str, Any]:
    # The card, plus what serves it: engine, precision and its start-up check, providers.
    return {**engine.card.to_dict(), "runtime": engine.runtime}


class Runtime(BaseModel):
    engine: str = Field(description="onnxruntime or openvino")
    precision: str = Field(description="what it computes in: f32, bf16 or f16")


class ServedModel(BaseModel):
    name: str = Field(description="what ?model= takes")
    file: str = Field(description="the model file's name")
    model: str = Field(description="the card's name@version")
    alpha: float = Field(description="the network's width multiplier (smaller: faster)")
    architecture: dict[str, Any] = Field(description="the card's architecture beyond alpha")
    n_styles: int
    styles: list[str]
    runtime: Runtime
    ms_640x480: float | None = Field(description=(
        "milliseconds for one 640 x 480 frame, measured as the model loaded"))
    default: bool = Field(description="the model of requests that name none")
    live: bool = Field(description="the model of live sessions that name none")


class ModelList(BaseModel):
    models: list[ServedModel]
    default: str = Field(description="the default model's name")
    live: str = Field(description="the live sessions' model (STYLEBOX_LIVE_MODEL)")


@router.get("/models", summary="The served models")
async def list_models(state: StateDep) -> ModelList:
    engines = {name: served_model(state, name).engine  # 503 while one is not loaded
               for name in state.served}
    for engine in engines.values():
        if engine.live_ms is None:  # one model: not timed at start-up (service/models.py)
            await to_thread.run_sync(measure, engine, limiter=state.limiter)
    live = state.live_model
    out = []
    for name, engine in engines.items():
        card = engine.card
        out.append(ServedModel(
            name=name, file=engine.path.name, model=f"{card.name}@{card.version}",
            alpha=card.alpha, architecture=dict(card.arch), n_styles=card.n_styles,
            styles=card.style_names,
            runtime=Runtime(engine=engine.backend, precision=engine.precision),
            ms_640x480=None if engine.live_ms is None else round(engine.live_ms, 1),
            default=name == DEFAULT_MODEL, live=name == live))
    return ModelList(models=out, default=DEFAULT_MODEL, live=live)
