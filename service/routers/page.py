"""The web page (`GET /`), its static files, and the per-style preview images.

Plain HTML/CSS/JS from service/static/ (no build step, no CDN): the page reads the style list
from GET /styles and the model card from GET /model, so it works with any model. Its three
modes: a photo (POST /stylize), a video file (the /videos jobs) and the live camera
(WS /live). The page's upload limits are filled in from the settings, so the browser can
refuse an oversized file before sending it (the server still enforces them with a 413).
"""

from __future__ import annotations

import html
from functools import cache
from pathlib import Path
from typing import Annotated

from anyio import to_thread
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import FileResponse, HTMLResponse

from stylebox.service.deps import NOT_READY, get_engine, get_settings
from stylebox.service.engine import Engine
from stylebox.service.http.access import Access, mark
from stylebox.service.http.errors import StyleboxError, UnknownStyleError
from stylebox.service.previews import PREVIEW_SIZE, PreviewCache
from stylebox.service.settings import Settings

router = APIRouter(tags=["page"])

STATIC = Path(__file__).resolve().parent.parent / "static"
_ASSETS = {"app.js": "text/javascript", "style.css": "text/css", "favicon.svg": "image/svg+xml"}
_previews = PreviewCache()


class StaticFileMissing(StyleboxError):
    status, title, slug = 404, "Not found", "not-found"


@cache
def _index_html(max_upload_bytes: int, video_max_upload_bytes: int) -> str:
    """The page with the upload limits filled in: read from the package once, not per visit."""
    text = (STATIC / "index.html").read_text(encoding="utf-8")
    return (text.replace("{{max_upload_bytes}}", html.escape(str(max_upload_bytes)))
            .replace("{{video_max_upload_bytes}}", html.escape(str(video_max_upload_bytes))))


@router.get("/", include_in_schema=False)
@mark(Access.PAGE)
def index(settings: Annotated[Settings, Depends(get_settings)]) -> HTMLResponse:
    text = _index_html(settings.max_upload_bytes, settings.video_max_upload_bytes)
    # Its Content-Security-Policy comes from service/http/middleware.py (PAGE_CSP), with every
    # other security header.
    return HTMLResponse(text, headers={"Cache-Control": "no-cache"})


@router.get("/static/{name}", include_in_schema=False)
@mark(Access.PAGE)
def static_file(name: str) -> FileResponse:
    if name not in _ASSETS:  # a fixed list: no path tricks, no directory listing
        raise StaticFileMissing(f"no such file: /static/{name}")
    return FileResponse(STATIC / name, media_type=_ASSETS[name],
                        headers={"Cache-Control": "no-cache"})


@router.get("/sample.png", summary="The sample photo the style previews are made from",
            response_class=Response,
            responses={200: {"content": {"image/png": {}}}, **NOT_READY})
@mark(Access.PAGE)
async def sample(request: Request,
                 engine: Annotated[Engine, Depends(get_engine)]) -> Response:
    png = await to_thread.run_sync(_previews.sample_png, engine,
                                   limiter=request.app.state.limiter)
    # The model's card carries it, and a restart may load another model.
    return Response(png, media_type="image/png", headers={"Cache-Control": "public, max-age=300"})


@router.get(
    "/styles/{name}/preview.png",
    summary=f"A {PREVIEW_SIZE}px preview of one style, made by the loaded model",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}},
               404: {"description": "unknown style"}, **NOT_READY},
)
# No mark, so keyed: it runs the model. Admission control leaves it alone: the input is the
# fixed small sample, and each style's preview is made once.
async def preview(name: str, request: Request,
                  engine: Annotated[Engine, Depends(get_engine)]) -> Response:
    if name not in engine.style_names:
        raise UnknownStyleError([name[:64]], engine.style_names)
    png = await to_thread.run_sync(_previews.get, engine, name,
                                   limiter=request.app.state.limiter)
    return Response(png, media_type="image/png", headers={
        # The same model always gives the same preview; a restart may load another model.
        "Cache-Control": "public, max-age=300",
        "X-Stylebox-Model": f"{engine.card.name}@{engine.card.version}",
    })
