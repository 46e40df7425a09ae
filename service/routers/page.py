"""The web page (`GET /`), its static files and the sample photo: fixed pages, open without
the API key (what the page fetches from the API needs it; the style previews are
`GET /styles/{name}/preview.png`, service/routers/styles.py).

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
from fastapi import APIRouter, Depends, Response
from fastapi.responses import FileResponse, HTMLResponse

from stylebox.service.deps import NOT_READY, get_engine, get_settings
from stylebox.service.engine import Engine
from stylebox.service.http.access import Access, guard
from stylebox.service.http.errors import StyleboxError
from stylebox.service.settings import Settings
from stylebox.service.state import StateDep

# Open: a browser cannot attach a header to a page load, and these run no model on a
# client's input (the sample is the card's own photo).
router = APIRouter(tags=["page"], dependencies=[guard(Access.PAGE)])

STATIC = Path(__file__).resolve().parent.parent / "static"
_ASSETS = {"app.js": "text/javascript", "style.css": "text/css", "favicon.svg": "image/svg+xml"}


class StaticFileMissing(StyleboxError):
    status, title, slug = 404, "Not found", "not-found"


@cache
def _index_html(max_upload_bytes: int, video_max_upload_bytes: int) -> str:
    """The page with the upload limits filled in: read from the package once, not per visit."""
    text = (STATIC / "index.html").read_text(encoding="utf-8")
    return (text.replace("{{max_upload_bytes}}", html.escape(str(max_upload_bytes)))
            .replace("{{video_max_upload_bytes}}", html.escape(str(video_max_upload_bytes))))


@router.get("/", include_in_schema=False)
def index(settings: Annotated[Settings, Depends(get_settings)]) -> HTMLResponse:
    text = _index_html(settings.max_upload_bytes, settings.video_max_upload_bytes)
    # Its Content-Security-Policy comes from service/http/middleware.py (PAGE_CSP), with every
    # other security header.
    return HTMLResponse(text, headers={"Cache-Control": "no-cache"})


@router.get("/static/{name}", include_in_schema=False)
def static_file(name: str) -> FileResponse:
    if name not in _ASSETS:  # a fixed list: no path tricks, no directory listing
        raise StaticFileMissing(f"no such file: /static/{name}")
    return FileResponse(STATIC / name, media_type=_ASSETS[name],
                        headers={"Cache-Control": "no-cache"})


@router.get("/sample.png", summary="The sample photo the style previews are made from",
            response_class=Response,
            responses={200: {"content": {"image/png": {}}}, **NOT_READY})
async def sample(state: StateDep, engine: Annotated[Engine, Depends(get_engine)]) -> Response:
    png = await to_thread.run_sync(state.previews.sample_png, engine, limiter=state.limiter)
    # The model's card carries it, and a restart may load another model.
    return Response(png, media_type="image/png", headers={"Cache-Control": "public, max-age=300"})
