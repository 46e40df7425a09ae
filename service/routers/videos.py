"""`/videos`: stylize a video file as a job. POST the clip (202 + Location), poll
GET /videos/{id}, download GET /videos/{id}/result (an H.264 MP4; Range requests work),
DELETE /videos/{id} to cancel or delete. service/jobs.py runs the jobs; docs/video.md has
the API with curl examples.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import anyio
from anyio import to_thread
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, Field

from stylebox.service.access import mark
from stylebox.service.controls import MAX_MAX_SIDE, MIN_MAX_SIDE, Controls
from stylebox.service.deps import get_engine, get_settings
from stylebox.service.engine import Engine
from stylebox.service.errors import JobNotDoneError, JobNotFoundError, UploadTimeoutError
from stylebox.service.jobs import JobRequest, VideoJobs
from stylebox.service.settings import Settings
from stylebox.service.styles import parse_style_spec
from stylebox.service.upload import VIDEO_FIELD, save_video_upload
from stylebox.service.video import probe

router = APIRouter(tags=["videos"])

_PROBLEM = {"content": {"application/problem+json": {}}}
_FILE = {"type": "string", "format": "binary", "minLength": 1}
_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {"schema": {"type": "object", "required": [VIDEO_FIELD],
                                           "properties": {VIDEO_FIELD: _FILE}}},
        "video/*": {"schema": _FILE},
        "application/octet-stream": {"schema": _FILE},
    },
}


class Problem(BaseModel):
    """An RFC 9457 problem object (a failed job's `error`). service/openapi.py puts the one
    Problem schema every error response uses in its place."""

    model_config = {"extra": "allow"}
    type: str
    title: str
    status: int
    detail: str


class VideoJob(BaseModel):
    """A video job's status (GET /videos/{id})."""

    id: str = Field(description="the job id, unguessable")
    state: Literal["queued", "running", "done", "failed", "cancelled"]
    frames_done: int = Field(ge=0)
    frames_total: int = Field(ge=0, description="an estimate until the job is done")
    progress: float = Field(ge=0, le=1)
    fps: float | None = Field(description="frames stylized per second so far")
    eta_s: float | None = Field(description="seconds left; null until known")
    error: Problem | None = Field(description="why the job failed (state failed)")
    result: str | None = Field(description="/videos/{id}/result once done")
    style: str = Field(description="the canonical style spec")
    width: int = Field(description="the result's width")
    height: int = Field(description="the result's height")
    duration_s: float | None = Field(description="the clip's duration, if the file says")
    created_at: str | None = Field(description="ISO 8601, UTC")
    expires_at: str | None = Field(description="when the job and its result are deleted "
                                                "(ISO 8601, UTC); null while it runs")


def get_jobs(request: Request) -> VideoJobs:
    return request.app.state.videos


@router.post(
    "/videos",
    summary="Stylize a video file (a job)",
    status_code=202,
    response_model=VideoJob,
    openapi_extra={"requestBody": _BODY},
    responses={
        202: {"description": "queued; Location names the job",
              "headers": {"Location": {"description": "/videos/{id}", "required": True,
                                       "schema": {"type": "string"}}},
              "links": {name: {"operationId": name,
                               "parameters": {"job_id": "$response.body#/id"}}
                        for name in ("get_video", "get_video_result", "delete_video")}},
        400: {"description": "malformed multipart body", **_PROBLEM},
        404: {"description": "unknown style (the body lists the valid ones)", **_PROBLEM},
        408: {"description": "the upload did not arrive within video_upload_timeout_s",
              **_PROBLEM},
        413: {"description": "body over video_max_upload_bytes; clip over the duration, "
                             "frame-count or frame-size bounds", **_PROBLEM},
        415: {"description": "not a video this server reads (or a still image, or no "
                             "video stream)", **_PROBLEM},
        422: {"description": "bad style spec or parameters, missing or corrupt video",
              **_PROBLEM},
        503: {"description": "model not loaded, or the video queue is full (with "
                             "Retry-After)", **_PROBLEM},
    },
)
@mark()  # keyed, as /stylize; not admission-controlled: the job queue bounds the work
async def submit_video(
    request: Request,
    engine: Annotated[Engine, Depends(get_engine)],
    settings: Annotated[Settings, Depends(get_settings)],
    jobs: Annotated[VideoJobs, Depends(get_jobs)],
    style: Annotated[str | None, Query(
        description="a style name (`candy`) or a blend (`candy:0.7,mosaic:0.3`), as for "
                    "POST /stylize")] = None,
    strength: Annotated[float, Query(
        ge=0, le=1, allow_inf_nan=False,
        description="how much style: 0 = the clip, 1 = the full style")] = 1.0,
    preserve_color: Annotated[bool, Query(
        description="keep the clip's colours, take only the style's lightness")] = False,
    max_side: Annotated[int | None, Query(
        ge=MIN_MAX_SIDE, le=MAX_MAX_SIDE,
        description="downscale so the longer side is at most this many pixels; the "
                    "result has that size (rounded down to even)")] = None,
    stabilize: Annotated[bool, Query(
        description="carry the normalisation statistics from frame to frame (less "
                    "flicker); false stylizes every frame on its own")] = True,
) -> Response:
    mix = parse_style_spec(style, engine.style_names)  # before the upload is read
    controls = Controls(strength, preserve_color, max_side)
    job_id = jobs.reserve()  # 503 when full, before the body is read
    try:
        path = jobs.store.input(job_id)
        with anyio.move_on_after(settings.video_upload_timeout_s) as upload:
            await save_video_upload(request, path, settings.video_max_upload_bytes)
        if upload.cancelled_caught:
            raise UploadTimeoutError(f"the upload did not arrive within "
                                     f"{settings.video_upload_timeout_s:g} s",
                                     video_upload_timeout_s=settings.video_upload_timeout_s)
        info = await to_thread.run_sync(probe, path, jobs.limits, max_side)
    except BaseException:
        await to_thread.run_sync(jobs.release, job_id)
        raise
    status = jobs.submit(job_id, JobRequest(mix.spec, mix.vector(engine.style_names),
                                            controls, stabilize, info))
    return JSONResponse(status, status_code=202, headers={"Location": f"/videos/{job_id}"})


_JOB_404 = {404: {"description": "no such job (never made, deleted or expired)", **_PROBLEM}}


@router.get("/videos/{job_id}", summary="A video job's status", response_model=VideoJob,
            responses=_JOB_404, operation_id="get_video")
@mark()
async def get_video(job_id: str, jobs: Annotated[VideoJobs, Depends(get_jobs)]) -> Any:
    return JSONResponse(await to_thread.run_sync(jobs.status, job_id))


@router.get(
    "/videos/{job_id}/result",
    summary="The stylized video (H.264 MP4)",
    response_class=FileResponse,
    operation_id="get_video_result",
    responses={
        200: {"content": {"video/mp4": {"schema": {"type": "string", "format": "binary"}}},
              "description": "the stylized clip; Range requests are answered 206"},
        409: {"description": "the job is not done (queued, running, failed or cancelled)",
              **_PROBLEM},
        **_JOB_404,
    },
)
@mark()
async def get_video_result(job_id: str, jobs: Annotated[VideoJobs, Depends(get_jobs)]
                           ) -> Response:
    status = await to_thread.run_sync(jobs.status, job_id)
    if status["state"] != "done":
        raise JobNotDoneError(f"video job {job_id!r} is {status['state']}; its result is "
                              "there once the state is done", state=status["state"])
    path = jobs.store.result(job_id)
    if not await to_thread.run_sync(path.is_file):
        raise JobNotFoundError(f"the result of video job {job_id!r} is gone (deleted)")
    return FileResponse(path, media_type="video/mp4", filename=f"stylebox-{job_id[:8]}.mp4",
                        content_disposition_type="inline")


@router.delete("/videos/{job_id}", summary="Cancel a video job, or delete its result",
               status_code=204, response_class=Response, operation_id="delete_video",
               responses={204: {"description": "cancelled (or deleted)"}, **_JOB_404})
@mark()
async def delete_video(job_id: str, jobs: Annotated[VideoJobs, Depends(get_jobs)]
                       ) -> Response:
    await to_thread.run_sync(jobs.delete, job_id)
    return Response(status_code=204)

