"""`GET /model`: the loaded model's card (styles, architecture, training, export facts) and
the runtime serving it (engine, precision, the precision check)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from stylebox.service.deps import NOT_READY, get_engine
from stylebox.service.engine import Engine
from stylebox.service.http.access import Access, guard

router = APIRouter(tags=["model"], responses=NOT_READY, dependencies=[guard(Access.KEYED)])


@router.get("/model", summary="The model card")
def model_card(engine: Annotated[Engine, Depends(get_engine)]) -> dict[str, Any]:
    # The card, plus what serves it: engine, precision and its start-up check, providers.
    return {**engine.card.to_dict(), "runtime": engine.runtime}
