"""`POST /optimize`: the best-quality render of one photo, a trainer job. A `stylebox worker`
runs Gatys et al.'s per-image optimisation on VGG-19 from the feed-forward output, toward a
style of the served model or toward a painting sent with the photo (training/optimize.py);
GET /jobs/{id} shows its progress, /jobs/{id}/preview the image so far, /jobs/{id}/result
the PNG once done. Minutes, not milliseconds: it is for the one photo a user cares about.
"""

from __future__ import annotations

from typing import Annotated

from anyio import to_thread
from fastapi import APIRouter, Depends, Query, Request, Response

from stylebox.service.deps import get_engine, get_settings
from stylebox.service.engine import Engine
from stylebox.service.http.access import Access, guard
from stylebox.service.http.errors import InvalidFormError, UnknownStyleError
from stylebox.service.routers.jobs import PROBLEM, QUEUED, Trainer
from stylebox.service.settings import Settings
from stylebox.service.trainer import TrainerJob, TrainerRequest, accept_image
from stylebox.service.upload import read_form

router = APIRouter(tags=["jobs"], dependencies=[guard(Access.KEYED)])
_FILE = {"type": "string", "format": "binary"}


def text_ppm(side: int, ink: int) -> str:
    """A side x side binary PPM whose every byte is printable ASCII (values 32-126 of 126),
    so a JSON string can carry it intact: the documented example of a photo or painting that
    the route accepts (an image of >= 64 px). `ink` picks the pattern."""
    px = "".join(chr(32 + (x * ink + y * (ink + 2) + c * 31 + (x // 8 ^ y // 8) * 17) % 95)
                 for y in range(side) for x in range(side) for c in range(3))
    return f"P6\n{side} {side}\n126\n{px}"


_EXAMPLE = {"summary": "a 64 px photo toward a 64 px painting (binary PPMs in text bytes)",
            "value": {"photo": text_ppm(64, 1), "painting": text_ppm(64, 7)}}
_FORM = {"required": True, "content": {"multipart/form-data": {"schema": {
    # Exactly these parts: read_form refuses any other (422).
    "type": "object", "required": ["photo"], "additionalProperties": False,
    "properties": {"photo": _FILE,
                   "painting": {**_FILE, "description": "optimise toward this painting "
                                                        "instead of ?style="}}},
    "examples": {"painting": _EXAMPLE},
    "encoding": {"photo": {"contentType": "image/*"}, "painting": {"contentType": "image/*"}}}}}


@router.post(
    "/optimize", summary="Best quality for one photo: per-image optimisation (a trainer job)",
    status_code=202, response_model=TrainerJob, openapi_extra={"requestBody": _FORM},
    responses={
        **QUEUED,
        400: {"description": "malformed multipart body", **PROBLEM},
        404: {"description": "unknown style", **PROBLEM},
        413: {"description": "an image over TRAINER_PAINTING_MAX_BYTES or its pixel bound",
              **PROBLEM},
        415: {"description": "not multipart/form-data, or an image this server does not read",
              **PROBLEM},
        422: {"description": "neither or both of style and painting, bad parameters, a "
                             "missing, corrupt or tiny image", **PROBLEM},
        503: {"description": "no trainer worker runs, the trainer queue is full (with "
                             "Retry-After), or the model is not loaded", **PROBLEM},
    },
)
async def optimize(
    request: Request, response: Response, trainer: Trainer,
    engine: Annotated[Engine, Depends(get_engine)],
    settings: Annotated[Settings, Depends(get_settings)],
    style: Annotated[str | None, Query(
        description="a style of the served model (or send a `painting` part instead)",
        max_length=64)] = None,
    max_side: Annotated[int, Query(ge=64, le=4096, description=(
        "the render's longer side in pixels (at most TRAINER_OPTIMIZE_MAX_SIDE)"))] = 512,
    iterations: Annotated[int | None, Query(ge=1, le=5000, description=(
        "an iteration budget (default: the worker's)"))] = None,
    time_limit_s: Annotated[float | None, Query(gt=0, le=86400, description=(
        "a time budget in seconds (at most TRAINER_OPTIMIZE_MAX_SECONDS; default: the "
        "worker's)"))] = None,
) -> TrainerJob:
    if max_side > settings.trainer_optimize_max_side:
        raise InvalidFormError(f"max_side {max_side} is over this server's bound "
                               f"({settings.trainer_optimize_max_side}, "
                               "TRAINER_OPTIMIZE_MAX_SIDE)")
    if time_limit_s is not None and time_limit_s > settings.trainer_optimize_max_seconds:
        raise InvalidFormError(f"time_limit_s {time_limit_s:g} is over this server's bound "
                               f"({settings.trainer_optimize_max_seconds:g} s, "
                               "TRAINER_OPTIMIZE_MAX_SECONDS)")
    if style is not None and style not in engine.style_names:
        raise UnknownStyleError([style], engine.style_names)
    await to_thread.run_sync(trainer.admit)  # before the upload
    files, _ = await read_form(request, settings.trainer_painting_max_bytes,
                               ("photo", "painting"), ())
    if "photo" not in files:
        raise InvalidFormError("the form needs a file part 'photo' (and a 'painting' part, "
                               "or ?style=)")
    if (style is None) == ("painting" not in files):
        raise InvalidFormError("give exactly one of ?style=NAME and a 'painting' part")
    limit = settings.trainer_painting_max_pixels
    kept = {"input": await to_thread.run_sync(accept_image, files["photo"], limit, "photo")}
    if "painting" in files:
        kept["painting"] = await to_thread.run_sync(accept_image, files["painting"], limit,
                                                    "painting")
    job = await to_thread.run_sync(trainer.submit, TrainerRequest(
        kind="optimize", style=style, max_side=max_side, iterations=iterations,
        time_limit_s=time_limit_s, model=f"{engine.card.name}@{engine.card.version}"), kept)
    response.headers["Location"] = f"/jobs/{job.id}"
    return job
