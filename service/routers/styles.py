"""`GET /styles`: the styles the loaded model offers, straight from its card;
`GET /styles/{name}/preview.png`, each style's preview made by the loaded model (both take
`?model=NAME` where several models are served; the edits below are the default model's);
and the style edits, each a trainer job (service/trainer.py, run by `stylebox worker`):
`POST /styles` (a new style from a painting) and `DELETE /styles/{name}` (a style added that
way). Style edits need the API key even where stylizing is open (as /admin does)."""

from __future__ import annotations

from typing import Annotated

from anyio import to_thread
from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel

from stylebox.model import lineage
from stylebox.service.deps import NOT_READY, UNKNOWN_MODEL, get_engine, get_model_engine
from stylebox.service.engine import Engine
from stylebox.service.http.access import Access, guard
from stylebox.service.http.errors import (
    InvalidFormError,
    ModelNotEditableError,
    StyleConflictError,
    UnknownStyleError,
)
from stylebox.service.previews import PREVIEW_SIZE
from stylebox.service.routers.admin import require_admin
from stylebox.service.routers.jobs import PROBLEM, QUEUED, Trainer
from stylebox.service.state import StateDep
from stylebox.service.trainer import TrainerJob, TrainerRequest, accept_image, check_style_name
from stylebox.service.upload import read_form

router = APIRouter(tags=["styles"], responses=NOT_READY, dependencies=[guard(Access.KEYED)])


class Style(BaseModel):
    name: str
    title: str
    source: str
    index: int  # position in the model's style_weights vector


class StyleList(BaseModel):
    styles: list[Style]


@router.get("/styles", summary="List the available styles", responses=UNKNOWN_MODEL)
def list_styles(engine: Annotated[Engine, Depends(get_model_engine)]) -> StyleList:
    return StyleList(styles=[Style(name=s.name, title=s.title, source=s.source, index=i)
                             for i, s in enumerate(engine.card.styles)])


@router.get(
    "/styles/{name}/preview.png",
    summary=f"A {PREVIEW_SIZE}px preview of one style, made by the loaded model",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}},
               404: {"description": "unknown style or model"}, **NOT_READY},
)
# Keyed: it runs the model. Admission control leaves it alone: the input is the fixed small
# sample, and each style's preview is made once (the app's PreviewCache).
async def preview(name: str, state: StateDep,
                  engine: Annotated[Engine, Depends(get_model_engine)]) -> Response:
    if name not in engine.style_names:
        raise UnknownStyleError([name[:64]], engine.style_names)
    png = await to_thread.run_sync(state.previews.get, engine, name, limiter=state.limiter)
    return Response(png, media_type="image/png", headers={
        # The same model always gives the same preview; a restart may load another model.
        "Cache-Control": "public, max-age=300",
        "X-Stylebox-Model": f"{engine.card.name}@{engine.card.version}",
    })



def added_by_upload(engine: Engine, name: str) -> bool:
    """Whether style `name` was added from an upload (the card's last add of it says so)."""
    adds = [e for e in engine.card.training.get("style_edits", [])
            if e.get("op") == "add" and e.get("name") == name]
    return bool(adds) and adds[-1].get("via") == "upload"


def _editable(engine: Engine) -> None:
    if lineage.KEY not in engine.card.export:  # the worker checks the file itself
        raise ModelNotEditableError(
            f"the served model ({engine.card.name}@{engine.card.version}) does not record the "
            "checkpoint it was exported from, so no style can be added or removed; re-export "
            "it with `stylebox export CHECKPOINT -o MODEL.onnx`, which records it")


_EDIT = {
    **QUEUED,
    401: {"description": "API key missing or wrong", **PROBLEM},
    403: {"description": "no API key configured and admin not enabled", **PROBLEM},
    409: {"description": "the name is taken (or being added), the model holds the most "
                         "styles allowed, the style was not added from an upload, or the "
                         "model does not record its checkpoint", **PROBLEM},
    503: {"description": "no trainer worker runs, or the trainer queue is full (with "
                         "Retry-After), or the model is not loaded", **PROBLEM},
}
_FILE = {"type": "string", "format": "binary"}
_FORM = {"required": True, "content": {"multipart/form-data": {"schema": {
    # Exactly these parts: read_form refuses any other (422).
    "type": "object", "required": ["painting", "name"], "additionalProperties": False,
    "properties": {"painting": _FILE,
                   "name": {"type": "string", "minLength": 1, "maxLength": 64,
                            "pattern": "^[a-z0-9][a-z0-9_-]{0,63}$",
                            "description": "the new style's name (?style=NAME)"},
                   "title": {"type": "string", "maxLength": 200,
                             "description": "a human title, e.g. 'Harbour (my painting)'"}}},
    "encoding": {"painting": {"contentType": "image/*"}}}}}


@router.post(
    "/styles", summary="Add a style from a painting (a trainer job)", status_code=202,
    response_model=TrainerJob, openapi_extra={"requestBody": _FORM},
    responses={**_EDIT,
               400: {"description": "malformed multipart body", **PROBLEM},
               413: {"description": "painting over TRAINER_PAINTING_MAX_BYTES or its pixel "
                                    "bound", **PROBLEM},
               415: {"description": "not multipart/form-data, or the painting is not an "
                                    "image this server reads", **PROBLEM},
               422: {"description": "bad name, missing part, corrupt or tiny painting",
                     **PROBLEM}},
)
async def add_style(request: Request, response: Response, state: StateDep, trainer: Trainer,
                    engine: Annotated[Engine, Depends(get_engine)],
                    _: Annotated[None, Depends(require_admin)]) -> TrainerJob:
    settings = state.settings
    _editable(engine)
    await to_thread.run_sync(trainer.admit)  # no worker, or the queue full: before the upload
    files, fields = await read_form(request, settings.trainer_painting_max_bytes,
                                    ("painting",), ("name", "title"))
    if "painting" not in files or "name" not in fields:
        raise InvalidFormError("the form needs a file part 'painting' and a text field "
                               "'name' (and may have 'title')")
    name = check_style_name(fields["name"].strip())
    title = fields.get("title", "").strip()
    if len(title) > 200:
        raise InvalidFormError("the title is longer than 200 characters")
    pending = await to_thread.run_sync(trainer.pending_styles)
    if name in engine.style_names or pending.get(name) == "add-style":
        raise StyleConflictError(f"a style named {name!r} already exists or is being added; "
                                 "choose another name", styles=engine.style_names)
    adding = sum(kind == "add-style" for kind in pending.values())
    cap = settings.trainer_max_styles
    if engine.card.n_styles + adding >= cap:
        raise StyleConflictError(f"the model holds {engine.card.n_styles} styles and "
                                 f"{adding} more are being added; at most {cap} "
                                 "(TRAINER_MAX_STYLES)", max_styles=cap)
    painting = await to_thread.run_sync(accept_image, files["painting"],
                                        settings.trainer_painting_max_pixels, "painting")
    model = f"{engine.card.name}@{engine.card.version}"
    job = await to_thread.run_sync(trainer.submit, TrainerRequest(
        kind="add-style", style=name, title=title, model=model), {"input": painting})
    response.headers["Location"] = f"/jobs/{job.id}"
    return job


@router.delete(
    "/styles/{name}", summary="Remove a style that was added from a painting (a trainer job)",
    status_code=202, response_model=TrainerJob,
    responses={**_EDIT, 404: {"description": "unknown style", **PROBLEM}},
)
async def remove_style(name: str, response: Response, trainer: Trainer,
                       engine: Annotated[Engine, Depends(get_engine)],
                       _: Annotated[None, Depends(require_admin)]) -> TrainerJob:
    if name not in engine.style_names:
        raise UnknownStyleError([name[:64]], engine.style_names)
    if not added_by_upload(engine, name):
        raise StyleConflictError(f"{name!r} was not added from an upload; only those can be "
                                 "removed here (`stylebox remove-style` edits a checkpoint)")
    _editable(engine)
    pending = await to_thread.run_sync(trainer.pending_styles)
    if name in pending:
        raise StyleConflictError(f"a job is already editing {name!r}")
    job = await to_thread.run_sync(trainer.submit, TrainerRequest(
        kind="remove-style", style=name, model=f"{engine.card.name}@{engine.card.version}"),
        {})
    response.headers["Location"] = f"/jobs/{job.id}"
    return job
