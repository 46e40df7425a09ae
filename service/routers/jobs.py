"""`/jobs`: the trainer jobs (service/trainer.py) that POST /styles, DELETE /styles/{name} and
POST /optimize queue, run by `stylebox worker` processes. Poll GET /jobs/{id}; watch
GET /jobs/{id}/preview while it runs; an optimize job's render is GET /jobs/{id}/result;
POST /jobs/{id}/cancel stops one (a style edit that stops leaves the model as it was);
DELETE /jobs/{id} deletes it. GET /jobs says whether any worker runs.
"""

from __future__ import annotations

from typing import Annotated

from anyio import to_thread
from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, Field

from stylebox.service.http.access import Access, guard
from stylebox.service.http.errors import JobNotDoneError, JobNotFoundError
from stylebox.service.state import StateDep
from stylebox.service.trainer import PREVIEW, TrainerJob, TrainerJobs

router = APIRouter(tags=["jobs"], dependencies=[guard(Access.KEYED)])
PROBLEM = {"content": {"application/problem+json": {}}}
JOB_404 = {404: {"description": "no such job (never made, deleted or expired)", **PROBLEM}}
# The answer of every route that queues a trainer job (POST /styles, DELETE /styles/{name},
# POST /optimize).
QUEUED = {202: {"description": "queued; Location names the job (GET /jobs/{id})",
                "headers": {"Location": {"description": "/jobs/{id}", "required": True,
                                         "schema": {"type": "string"}}},
                "links": {name: {"operationId": name,
                                 "parameters": {"job_id": "$response.body#/id"}}
                          for name in ("get_job", "get_job_preview", "get_job_result",
                                       "cancel_job", "delete_job")}}}


def get_trainer(state: StateDep) -> TrainerJobs:
    return state.trainer


Trainer = Annotated[TrainerJobs, Depends(get_trainer)]


class TrainerInfo(BaseModel):
    workers: int = Field(description="`stylebox worker` processes alive (heartbeat fresh)")
    queued: int = Field(description="trainer jobs waiting for a worker")
    running: int
    max_queue: int = Field(description="more queued jobs than this are refused (503)")
    start_worker: str = Field(description="how to start a worker")


@router.get("/jobs", summary="The trainer: workers alive, jobs waiting and running")
async def trainer_info(trainer: Trainer) -> TrainerInfo:
    return TrainerInfo(**await to_thread.run_sync(trainer.info))


@router.get("/jobs/{job_id}", summary="A trainer job's status", response_model=TrainerJob,
            responses=JOB_404, operation_id="get_job")
async def get_job(job_id: str, trainer: Trainer) -> TrainerJob:
    return (await to_thread.run_sync(trainer.read, job_id)).shown()


async def _file(trainer: TrainerJobs, job_id: str, name: str, what: str,
                media_type: str) -> Response:
    status = await to_thread.run_sync(trainer.read, job_id)  # 404 first
    path = await to_thread.run_sync(trainer.file, job_id, name)
    if path is None or (name != PREVIEW and status.state != "done"):
        raise JobNotDoneError(f"job {job_id!r} ({status.kind}, {status.state}) has no {what} "
                              "yet", state=status.state)
    try:
        data = await to_thread.run_sync(path.read_bytes)
    except (FileNotFoundError, NotADirectoryError):
        raise JobNotFoundError(f"the {what} of job {job_id!r} is gone (deleted)") from None
    return Response(data, media_type=media_type, headers={"Cache-Control": "no-store"})


@router.get("/jobs/{job_id}/preview", summary="The latest preview of a running job (JPEG)",
            response_class=Response, operation_id="get_job_preview",
            responses={200: {"content": {"image/jpeg": {}}},
                       409: {"description": "no preview yet", **PROBLEM}, **JOB_404})
async def get_job_preview(job_id: str, trainer: Trainer) -> Response:
    return await _file(trainer, job_id, PREVIEW, "preview", "image/jpeg")


@router.get("/jobs/{job_id}/result", summary="An optimize job's render (PNG)",
            response_class=Response, operation_id="get_job_result",
            responses={200: {"content": {"image/png": {}}},
                       409: {"description": "the job is not done, or has no image result "
                                            "(a style edit: its result is the served model)",
                             **PROBLEM}, **JOB_404})
async def get_job_result(job_id: str, trainer: Trainer) -> Response:
    return await _file(trainer, job_id, "result.png", "image result", "image/png")


@router.post("/jobs/{job_id}/cancel", summary="Stop a trainer job (it stays readable)",
             response_model=TrainerJob, operation_id="cancel_job",
             responses={200: {"description": "the job's status: `cancelled` if it was queued "
                                             "or running; an ended job is left as it was"},
                        **JOB_404})
async def cancel_job(job_id: str, trainer: Trainer) -> TrainerJob:
    return await to_thread.run_sync(trainer.cancel, job_id)


@router.delete("/jobs/{job_id}", summary="Delete a trainer job (stopped first if it runs)",
               status_code=204, response_class=Response, operation_id="delete_job",
               responses={204: {"description": "deleted (404 from then on)"}, **JOB_404})
async def delete_job(job_id: str, trainer: Trainer) -> Response:
    await to_thread.run_sync(trainer.delete, job_id)
    return Response(status_code=204)
