"""`/videos`: stylize a video file as a job. POST the clip (202 + Location), poll
GET /videos/{id}, download GET /videos/{id}/result (an H.264 MP4; Range requests work),
POST /videos/{id}/cancel to stop it (it stays readable, `cancelled`), DELETE /videos/{id} to
delete it (stopped first if it runs; 404 from then on). service/jobs.py runs the jobs and
defines their status (`VideoJob`, the response model of every route that answers one);
docs/video.md has the API with curl examples.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from typing import Annotated, Any, BinaryIO

import anyio
from anyio import to_thread
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import FileResponse
from starlette.types import Receive, Scope, Send

from stylebox.service.controls import MAX_SIDE, STRENGTH, Controls
from stylebox.service.deps import Model, get_model, get_settings
from stylebox.service.http.access import Access, guard
from stylebox.service.http.errors import JobNotDoneError, JobNotFoundError, UploadTimeoutError
from stylebox.service.jobs import JobRequest, VideoJob, VideoJobs
from stylebox.service.settings import Settings
from stylebox.service.state import StateDep
from stylebox.service.styles import parse_style_spec
from stylebox.service.upload import VIDEO_FIELD, save_video_upload
from stylebox.service.video import probe

# Keyed, as /stylize; not admission-controlled: the job queue bounds the work.
router = APIRouter(tags=["videos"], dependencies=[guard(Access.KEYED)])

_PROBLEM = {"content": {"application/problem+json": {}}}
# What a multipart upload's `video` part may be: a clip, or an animated GIF or WebP.
VIDEO_MEDIA = "video/*, image/gif, image/webp"
_FILE = {"type": "string", "format": "binary", "minLength": 1}
# An example clip the route accepts: two 8x8 frames of YUV4MPEG2, the one container FFmpeg
# reads whose bytes can all be text (a JSON string carries no other bytes intact), so a
# client or a contract tester sending the documented example sends a real video, not only
# bytes that fit `format: binary` (which are seldom a video: 415).
EXAMPLE_CLIP = ("YUV4MPEG2 W8 H8 F10:1 Ip A1:1 C420jpeg\n"
                + ("FRAME\n" + "P" * 64 + "d" * 32) * 2)
_CLIP = {"clip": {"summary": "a 2-frame 8x8 clip (YUV4MPEG2)", "value": EXAMPLE_CLIP}}
_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {"type": "object", "required": [VIDEO_FIELD],
                       "properties": {VIDEO_FIELD: _FILE}},
            "encoding": {VIDEO_FIELD: {"contentType": VIDEO_MEDIA}},
            "examples": {"clip": {**_CLIP["clip"], "value": {VIDEO_FIELD: EXAMPLE_CLIP}}}},
        "video/*": {"schema": _FILE},
        # Animated GIF and WebP arrive with their image types (a still one is a 415).
        "image/gif": {"schema": _FILE},
        "image/webp": {"schema": _FILE},
        "application/octet-stream": {"schema": _FILE, "examples": _CLIP},
    },
}


def get_jobs(state: StateDep) -> VideoJobs:
    return state.videos


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
                        for name in ("get_video", "get_video_result", "cancel_video",
                                     "delete_video")}},
        400: {"description": "malformed multipart body", **_PROBLEM},
        404: {"description": "unknown style or model (the body lists the valid ones)",
              **_PROBLEM},
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
async def submit_video(
    request: Request,
    response: Response,
    chosen: Annotated[Model, Depends(get_model)],
    settings: Annotated[Settings, Depends(get_settings)],
    jobs: Annotated[VideoJobs, Depends(get_jobs)],
    style: Annotated[str | None, Query(
        description="a style name (`candy`) or a blend (`candy:0.7,mosaic:0.3`), as for "
                    "POST /stylize")] = None,
    strength: Annotated[float, Query(
        **STRENGTH.query(),
        description="how much style: 0 = the clip, 1 = the full style")] = 1.0,
    preserve_color: Annotated[bool, Query(
        description="keep the clip's colours, take only the style's lightness")] = False,
    max_side: Annotated[int | None, Query(
        **MAX_SIDE.query(),
        description="downscale so the longer side is at most this many pixels; the "
                    "result has that size (rounded down to even)")] = None,
    stabilize: Annotated[bool, Query(
        description="carry the normalisation statistics from frame to frame (less "
                    "flicker); false stylizes every frame on its own")] = True,
) -> VideoJob:
    mix = parse_style_spec(style, chosen.engine.style_names)  # before the upload is read
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
    status = jobs.submit(job_id, JobRequest(mix, controls, stabilize, info,
                                                 chosen.name))
    response.headers["Location"] = f"/videos/{job_id}"
    return status


_JOB_404 = {404: {"description": "no such job (never made, deleted or expired)", **_PROBLEM}}


@router.get("/videos/{job_id}", summary="A video job's status", response_model=VideoJob,
            responses=_JOB_404, operation_id="get_video")
async def get_video(job_id: str, jobs: Annotated[VideoJobs, Depends(get_jobs)]) -> VideoJob:
    return await to_thread.run_sync(jobs.status, job_id)


class OpenFileResponse(FileResponse):
    """FileResponse on a file the route has already opened: every byte is read from that
    open file, never from its path again, so a file deleted (DELETE, on any replica) after
    the route found it is still sent whole (POSIX keeps an unlinked file's data while it is
    open). Starlette's Range handling (206, multipart/byteranges, 416, If-Range) and headers
    (Content-Length, ETag and Last-Modified from the open file's fstat) are kept."""

    def __init__(self, file: BinaryIO, **kwargs: Any) -> None:
        self.file = file
        super().__init__(file.name, stat_result=os.fstat(file.fileno()), **kwargs)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # A server offering "pathsend" would be handed the path to open: not this file.
        extensions = scope.get("extensions") or {}
        if "http.response.pathsend" in extensions:
            scope = {**scope, "extensions": {k: v for k, v in extensions.items()
                                             if k != "http.response.pathsend"}}
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.file.close()

    @contextlib.asynccontextmanager
    async def _open_file(self) -> AsyncIterator[anyio.AsyncFile[bytes]]:
        # Starlette opens the path here for each response body; this one has its file.
        yield anyio.wrap_file(self.file)


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
async def get_video_result(job_id: str, jobs: Annotated[VideoJobs, Depends(get_jobs)]
                           ) -> Response:
    status = await to_thread.run_sync(jobs.status, job_id)
    if status.state != "done":
        raise JobNotDoneError(f"video job {job_id!r} is {status.state}; its result is "
                              "there once the state is done", state=status.state)
    path = jobs.store.result(job_id)
    try:  # opened now: what is sent is this file, even if the job is deleted meanwhile
        file = await to_thread.run_sync(open, path, "rb")
    except (FileNotFoundError, NotADirectoryError):
        raise JobNotFoundError(f"the result of video job {job_id!r} is gone (deleted)") \
            from None
    return OpenFileResponse(file, media_type="video/mp4",
                            filename=f"stylebox-{job_id[:8]}.mp4",
                            content_disposition_type="inline")


@router.post(
    "/videos/{job_id}/cancel", summary="Stop a video job (it stays readable, cancelled)",
    response_model=VideoJob, operation_id="cancel_video",
    responses={200: {"description": "the job's status: `cancelled` if it was queued or "
                                    "running; a job that had already ended is left as it "
                                    "was (done, failed or cancelled)"}, **_JOB_404})
async def cancel_video(job_id: str, jobs: Annotated[VideoJobs, Depends(get_jobs)]
                       ) -> VideoJob:
    return await to_thread.run_sync(jobs.cancel, job_id)


@router.delete("/videos/{job_id}", summary="Delete a video job (stopped first if it runs)",
               status_code=204, response_class=Response, operation_id="delete_video",
               responses={204: {"description": "deleted: the job and its files are gone "
                                               "(404 from then on)"}, **_JOB_404})
async def delete_video(job_id: str, jobs: Annotated[VideoJobs, Depends(get_jobs)]
                       ) -> Response:
    await to_thread.run_sync(jobs.delete, job_id)
    return Response(status_code=204)

