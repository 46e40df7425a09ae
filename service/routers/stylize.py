"""`POST /stylize`: one image in, the same-sized stylized image out.

The image takes service/pipeline.py's one path (decode, max_side, price, stylize, controls,
encode), each step in a worker thread (never on the event loop); inference is additionally
bounded by `max_concurrency` so a burst queues instead of oversubscribing the CPU/GPU, and
codec work by a wider limiter that bounds memory.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response

from stylebox.service.controls import MAX_SIDE, QUALITY, STRENGTH, Controls
from stylebox.service.deps import Model, get_model, get_settings
from stylebox.service.http.access import Access, guard
from stylebox.service.http.admission import ADMITTED
from stylebox.service.imaging import MEDIA_TYPES
from stylebox.service.pipeline import OneImage, arun_steps, image_path
from stylebox.service.settings import Settings
from stylebox.service.state import StateDep
from stylebox.service.styles import parse_style_spec
from stylebox.service.upload import FIELD, read_image_upload

router = APIRouter(tags=["stylize"], dependencies=[guard(Access.KEYED)])

_BY_MEDIA = {"image/png": "png", "image/jpeg": "jpeg", "image/jpg": "jpeg", "image/webp": "webp"}
_PROBLEM = {"content": {"application/problem+json": {}}}
# The served model's name (?model=NAME); X-Stylebox-Model stays the card's name@version.
MODEL_HEADER = "X-Stylebox-Model-Name"


def choose_format(fmt: str | None, accept: str | None, default: str) -> str:
    """`format=` wins; else the Accept entry with the highest q we can produce; else default.

    An Accept naming nothing we produce falls back to the default rather than 406: many
    clients send `Accept: application/json` (or similar) by habit.
    """
    if fmt:
        return "jpeg" if fmt == "jpg" else fmt
    best, best_rank = default, (0.0, False)
    for item in (accept or "").split(","):
        media, *params = (p.strip() for p in item.split(";"))
        q = 1.0
        for p in params:
            if p.lower().startswith("q="):
                try:
                    q = float(p[2:])
                except ValueError:
                    q = 0.0
        if not math.isfinite(q) or q <= 0:
            continue
        media = media.lower()
        found = _BY_MEDIA.get(media) or (default if media in ("image/*", "*/*") else None)
        rank = (q, media in _BY_MEDIA)  # a named type beats a wildcard at equal q
        if found and rank > best_rank:
            best, best_rank = found, rank
    return best


_FILE = {"type": "string", "format": "binary", "minLength": 1}  # an empty file is a 422
_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {"schema": {"type": "object", "required": [FIELD], "properties": {
            FIELD: _FILE}}, "encoding": {FIELD: {"contentType": "image/*"}}},
        "image/*": {"schema": _FILE},
        "application/octet-stream": {"schema": _FILE},
    },
}


@router.post(
    "/stylize",
    summary="Stylize an image",
    # At most max_concurrency + max_queue at once, each with a deadline (admission control).
    dependencies=[ADMITTED],
    response_class=Response,
    openapi_extra={"requestBody": _BODY},
    responses={
        200: {"content": {m: {} for m in MEDIA_TYPES.values()},
              "description": "the stylized image, same width and height as the input",
              "headers": {MODEL_HEADER: {
                  "description": "the served model that made it (?model=, else `default`)",
                  "required": True, "schema": {"type": "string"}}}},
        400: {"description": "malformed multipart body", **_PROBLEM},
        404: {"description": "unknown style or model (the body lists the valid ones)",
              **_PROBLEM},
        413: {"description": "body over max_upload_bytes or image over max_pixels", **_PROBLEM},
        415: {"description": "not an image in a supported format", **_PROBLEM},
        422: {"description": "bad style spec, missing/corrupt image, bad parameters",
              **_PROBLEM},
        408: {"description": "the upload did not arrive within request_timeout_s", **_PROBLEM},
        # Admission control (service/http/admission.py) answers these before the handler runs.
        503: {"description": "model not loaded yet, or overloaded / past request_timeout_s "
                             "(with Retry-After)", **_PROBLEM},
    },
)
async def stylize(
    request: Request,
    state: StateDep,
    chosen: Annotated[Model, Depends(get_model)],
    settings: Annotated[Settings, Depends(get_settings)],
    style: Annotated[str | None, Query(
        description="a style name (`candy`) or a blend (`candy:0.7,mosaic:0.3`); "
                    "weights are normalised to sum to 1; see GET /styles")] = None,
    format: Annotated[Literal["png", "jpeg", "jpg", "webp"] | None, Query(
        description="output format; when absent it is negotiated from Accept, "
                    "then the server default")] = None,
    quality: Annotated[int, Query(**QUALITY.query(),
                                  description="JPEG/WebP quality")] = 90,
    strength: Annotated[float, Query(
        **STRENGTH.query(),
        description="how much style: 0 = the photo, 1 = the full style (a blend of photo "
                    "and stylized image in Oklab)")] = 1.0,
    preserve_color: Annotated[bool, Query(
        description="keep the photo's colours, take only the style's lightness")] = False,
    max_side: Annotated[int | None, Query(
        **MAX_SIDE.query(),
        description="downscale so the longer side is at most this many pixels first; "
                    "the result has that size")] = None,
) -> Response:
    engine = chosen.engine
    # Cheap checks first: a bad style is rejected before the upload is read.
    mix = parse_style_spec(style, engine.style_names)
    controls = Controls(strength, preserve_color, max_side)
    fmt = choose_format(format, request.headers.get("accept"), settings.default_format)
    made = await arun_steps(
        image_path(await read_image_upload(request, settings.max_upload_bytes),
                   OneImage(engine, settings), mix.vector(engine.style_names), controls,
                   settings=settings, fmt=fmt, quality=quality),
        {"codec": state.codec_limiter, "network": state.limiter})
    result = made.stylized
    iw, ih = result.inference_size
    tiles = {"X-Stylebox-Tiles": str(result.tiles)} if result.tiles else {}
    return Response(made.body, media_type=MEDIA_TYPES[fmt], headers={
        "X-Stylebox-Style": mix.spec,
        "X-Stylebox-Inference-Ms": f"{result.inference_ms:.1f}",
        # Differs from the image size when the image was over max_inference_pixels and
        # downscaled; tiled images ran at full size, in X-Stylebox-Tiles tiles.
        "X-Stylebox-Inference-Size": f"{iw}x{ih}",
        **tiles,
        "X-Stylebox-Model": f"{engine.card.name}@{engine.card.version}",
        MODEL_HEADER: chosen.name,
        "X-Stylebox-Controls": controls.summary,
        "Vary": "Accept",
    })
