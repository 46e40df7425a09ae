"""`GET /styles`: the styles the loaded model offers, straight from its card."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from stylebox.service.deps import NOT_READY, get_engine
from stylebox.service.engine import Engine

router = APIRouter(tags=["styles"], responses=NOT_READY)


class Style(BaseModel):
    name: str
    title: str
    source: str
    index: int  # position in the model's style_weights vector


class StyleList(BaseModel):
    styles: list[Style]


@router.get("/styles", summary="List the available styles")
def list_styles(engine: Annotated[Engine, Depends(get_engine)]) -> StyleList:
    return StyleList(styles=[Style(name=s.name, title=s.title, source=s.source, index=i)
                             for i, s in enumerate(engine.card.styles)])
