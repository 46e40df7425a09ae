"""`GET /styles`: the styles the loaded model offers, straight from its card; and
`GET /styles/{name}/preview.png`, each style's preview made by the loaded model."""

from __future__ import annotations

from typing import Annotated

from anyio import to_thread
from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel

from stylebox.service.deps import NOT_READY, get_engine
from stylebox.service.engine import Engine
from stylebox.service.http.access import Access, guard
from stylebox.service.http.errors import UnknownStyleError
from stylebox.service.previews import PREVIEW_SIZE
from stylebox.service.state import StateDep

router = APIRouter(tags=["styles"], responses=NOT_READY, dependencies=[guard(Access.KEYED)])


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


@router.get(
    "/styles/{name}/preview.png",
    summary=f"A {PREVIEW_SIZE}px preview of one style, made by the loaded model",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}},
               404: {"description": "unknown style"}, **NOT_READY},
)
# Keyed: it runs the model. Admission control leaves it alone: the input is the fixed small
# sample, and each style's preview is made once (the app's PreviewCache).
async def preview(name: str, state: StateDep,
                  engine: Annotated[Engine, Depends(get_engine)]) -> Response:
    if name not in engine.style_names:
        raise UnknownStyleError([name[:64]], engine.style_names)
    png = await to_thread.run_sync(state.previews.get, engine, name, limiter=state.limiter)
    return Response(png, media_type="image/png", headers={
        # The same model always gives the same preview; a restart may load another model.
        "Cache-Control": "public, max-age=300",
        "X-Stylebox-Model": f"{engine.card.name}@{engine.card.version}",
    })

