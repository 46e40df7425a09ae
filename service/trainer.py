"""Trainer jobs: a new style from a painting, a style removed, a best-quality render of one
photo. Any replica takes the request and answers for the job; a `stylebox worker` process
(torch, training/worker.py) runs it. The service itself stays torch-free.

The jobs live in the job store the video jobs use, in its `trainer/` folder, in the same
files and with the same rules (service/jobs.py `JobStore`: status.json replaced whole, the
cancel marker, claims by hard link, expiry, the sweep):

    trainer/<id>/input          the painting (add-style) or the photo (optimize)
    trainer/<id>/painting       optimize toward a painting instead of a style of the model
    trainer/<id>/preview.jpg    the latest preview, replaced whole while the job runs
    trainer/<id>/result.png     optimize's render, renamed into place when complete
    trainer/workers/<owner>.json  each worker's heartbeat (`WorkerInfo`)

A job is queued already released (owner `released:<replica>`): no replica runs it, every
worker may take it, and the hard-link claim gives it to exactly one. The worker refreshes its
status every heartbeat; a worker that dies leaves a running job that reads as failed
("interrupted") after STALE_BEATS missed beats, and the served model untouched (a style edit
replaces the model file in one rename, at its very end). Where no worker has beaten recently,
a new job is refused at once (503, and how to start one) rather than queued for no one.
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from stylebox.model.card import CardError, StyleInfo
from stylebox.service.http.errors import (
    InvalidStyleNameError,
    JobNotFoundError,
    NoWorkerError,
    TrainerJobInterruptedError,
    TrainerQueueFullError,
)
from stylebox.service.jobs import (
    ACTIVE,
    RELEASED,
    Clock,
    JobStore,
    Problem,
    State,
    StoredJob,
    default_dir,
    iso,
    problem_of,
)
from stylebox.service.settings import Settings

Kind = Literal["add-style", "remove-style", "optimize"]
FILES = ("input", "painting", "result.png")  # inputs first, the result last (JobStore.files)
PREVIEW = "preview.jpg"
WORKERS = "workers"
START_WORKER = ("start one beside the service with `stylebox worker` (it needs the train "
                "extra: pip install 'stylebox[train]'), or with docker compose: "
                "`docker compose --profile trainer up -d worker`")


class TrainerRequest(BaseModel):
    """What the job is to do, as the replica that took it resolved it."""

    model_config = ConfigDict(frozen=True)
    kind: Kind
    style: str | None = None  # add-/remove-style: the style; optimize: toward this style
    title: str = ""  # add-style: the new style's title
    max_side: int | None = None  # optimize
    iterations: int | None = None  # optimize
    time_limit_s: float | None = None  # optimize
    model: str = ""  # name@version served when it was asked (for the record)


class TrainerStatus(StoredJob):
    """A trainer job as status.json holds it (written by the replica that queued it, then by
    the worker that runs it, and by cancel)."""

    kind: Kind
    step: int = 0
    steps: int = 0  # an estimate until the job is done
    losses: dict[str, float] = Field(default_factory=dict)
    message: str = ""  # what the worker is doing now
    preview: bool = False  # PREVIEW exists
    made: str | None = None  # the model a style edit made (name@version), once done
    request: TrainerRequest | None = None

    def interrupted(self) -> Problem:
        return problem_of(TrainerJobInterruptedError(
            "the worker running this job stopped before it finished; the served model is "
            "unchanged; submit the job again", step=self.step))

    def shown(self) -> TrainerJob:
        done = self.state == "done"
        progress = 1.0 if done else min(0.99, self.step / self.steps) if self.steps else 0.0
        base = f"/jobs/{self.id}"
        return TrainerJob(
            id=self.id, kind=self.kind, state=self.state, progress=round(progress, 4),
            step=self.step, steps=self.steps, losses=self.losses,
            eta_s=self.eta_s if self.state in ACTIVE else None, message=self.message,
            error=self.error if self.state == "failed" else None,
            style=self.request.style if self.request else None,
            preview=f"{base}/preview" if self.preview else None,
            result=f"{base}/result" if done and self.kind == "optimize" else None,
            model=self.made, created_at=iso(self.created), expires_at=iso(self.expires))


class TrainerJob(BaseModel):
    """A trainer job's status (GET /jobs/{id})."""

    id: str = Field(description="the job id, unguessable")
    kind: Kind = Field(description="add-style, remove-style or optimize")
    state: State
    progress: float = Field(ge=0, le=1)
    step: int = Field(ge=0, description="training steps or optimisation iterations done")
    steps: int = Field(ge=0, description="the steps planned (an estimate until done)")
    losses: dict[str, float] = Field(description="the latest losses: style, content, ...")
    eta_s: float | None = Field(description="seconds left; null until known")
    message: str = Field(description="what the worker is doing now")
    error: Problem | None = Field(description="why the job failed (state failed)")
    style: str | None = Field(description="the style added, removed or optimised toward")
    preview: str | None = Field(description="/jobs/{id}/preview (JPEG) once there is one")
    result: str | None = Field(description="/jobs/{id}/result (PNG): optimize, once done")
    model: str | None = Field(description="the model a style edit made (name@version), "
                                          "served by every replica within seconds")
    created_at: str | None = Field(description="ISO 8601, UTC")
    expires_at: str | None = Field(description="when the job and its files are deleted "
                                                "(ISO 8601, UTC); null while it runs")


class WorkerInfo(BaseModel):
    """A worker's heartbeat file."""

    owner: str
    heartbeat: float
    started: float
    job: str | None = None  # the job it runs now


def jobs_root(settings: Settings) -> Path:
    """The trainer's folder in the job store (VIDEO_DIR, shared by every replica)."""
    return (Path(settings.video_dir) if settings.video_dir else default_dir()) / "trainer"


def store_of(settings: Settings, clock: Clock = time.time) -> JobStore:
    return JobStore(jobs_root(settings), settings.video_result_ttl_s,
                    settings.video_heartbeat_s, clock, status_type=TrainerStatus,
                    files=FILES, noun="job")


def write_json(path: Path, text: str) -> None:
    """Replace `path` whole (a temp file renamed over it)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def live_workers(store: JobStore, now: float | None = None) -> list[WorkerInfo]:
    """The workers whose heartbeat is fresh (written within STALE_BEATS heartbeats)."""
    now = store.clock() if now is None else now
    found = []
    with contextlib.suppress(FileNotFoundError):
        for path in (store.root / WORKERS).glob("*.json"):
            try:
                info = WorkerInfo.model_validate_json(path.read_bytes())
            except (OSError, ValueError):
                continue
            if now - info.heartbeat <= store.stale_s:
                found.append(info)
    return found


def check_style_name(name: str) -> str:
    """The name as the card will hold it; 422 with the rule otherwise (the card's own)."""
    try:
        return StyleInfo(name).name
    except CardError as e:
        raise InvalidStyleNameError(str(e)) from None


class TrainerJobs:
    """The trainer jobs as a replica sees them: admission (a worker alive, the queue bound),
    submitting, status, cancel and delete; every replica answers for every job."""

    def __init__(self, settings: Settings, clock: Clock = time.time) -> None:
        self.settings = settings
        self.store = store_of(settings, clock)
        self.owner = f"api:{socket.gethostname()}:{os.getpid()}"

    def _active(self) -> list[TrainerStatus]:
        now = self.store.clock()
        return [s for s in (self.store.effective(st, now) for st in self.store.statuses())
                if s.state in ACTIVE]

    def pending_styles(self) -> dict[str, Kind]:
        """The styles queued or running jobs are adding or removing."""
        return {s.request.style: s.kind for s in self._active()
                if s.request and s.request.style and s.kind != "optimize"}

    def admit(self) -> None:
        """Refuse at once what no worker would run, or what would overfill the queue."""
        retry = self.settings.retry_after_s
        if not live_workers(self.store):
            raise NoWorkerError(f"no trainer worker is running, so nothing would run this "
                                f"job; {START_WORKER}", max(retry, 30))
        queued = sum(s.state == "queued" for s in self._active())
        if queued >= self.settings.trainer_max_queue:
            raise TrainerQueueFullError(
                f"{queued} trainer jobs are waiting for a worker (at most "
                f"{self.settings.trainer_max_queue}); retry later", max(retry, 60),
                max_queue=self.settings.trainer_max_queue)

    def submit(self, request: TrainerRequest, files: dict[str, bytes]) -> TrainerJob:
        """Queue a job with its input files (names from FILES); any worker may take it."""
        self.admit()
        job_id = self.store.new_id()
        folder = self.store.create(job_id)
        for name, data in files.items():
            assert name in FILES[:-1], name
            (folder / name).write_bytes(data)
        now = self.store.clock()
        status = TrainerStatus(id=job_id, state="queued", kind=request.kind, created=now,
                               heartbeat=now, owner=RELEASED + self.owner, request=request,
                               message="waiting for a worker")
        self.store.write(job_id, status)
        return status.shown()

    def read(self, job_id: str) -> TrainerStatus:
        """The job's effective status; 404 if unknown, deleted or expired."""
        return self.store.current(job_id)

    def cancel(self, job_id: str) -> TrainerJob:
        """Stop a queued or running job (the worker stops within a step; a style edit that
        stops leaves the served model as it was); an ended job is left as it is."""
        current = self.read(job_id)
        if current.state not in ACTIVE:
            return current.shown()
        self.store.cancel(job_id, message="cancelled")  # the uploads go at once
        return self.read(job_id).shown()

    def delete(self, job_id: str) -> None:
        self.read(job_id)  # 404 first
        if not self.store.remove(job_id):
            raise JobNotFoundError(f"no job {job_id!r} (deleted)")

    def file(self, job_id: str, name: str) -> Path | None:
        """A job's preview or result, if it is there."""
        path = self.store.folder(job_id) / name
        return path if path.is_file() else None

    def info(self) -> dict:
        """GET /jobs: the workers alive and the jobs waiting or running."""
        active = self._active()
        return {"workers": len(live_workers(self.store)),
                "queued": sum(s.state == "queued" for s in active),
                "running": sum(s.state == "running" for s in active),
                "max_queue": self.settings.trainer_max_queue,
                "start_worker": START_WORKER}

    def sweep(self) -> int:
        return self.store.sweep()


def worker_beat(store: JobStore, info: WorkerInfo) -> None:
    """Write a worker's heartbeat file (training/worker.py, every heartbeat)."""
    folder = store.root / WORKERS
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / f"{info.owner.replace(':', '_')}.json", info.model_dump_json())


def worker_gone(store: JobStore, owner: str) -> None:
    with contextlib.suppress(OSError):
        (store.root / WORKERS / f"{owner.replace(':', '_')}.json").unlink()



KEEP_SIDE = 2048  # an upload is kept at most this long: styles train at 512, renders ≤ 1024
MIN_SIDE = 64  # a smaller painting or photo has too little texture to learn or keep


def accept_image(data: bytes, max_pixels: int, what: str) -> bytes:
    """An uploaded painting or photo, decoded here (the service's own limits and checks:
    413, 415, 422) and kept as a PNG of at most KEEP_SIDE px: the worker never parses what a
    client sent."""
    from PIL import Image

    from stylebox.service.http.errors import InvalidFormError
    from stylebox.service.imaging import decode_image

    rgb = decode_image(data, max_pixels).rgb  # (H, W, 3) uint8, upright
    h, w = rgb.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise InvalidFormError(f"the {what} is {w}x{h}; it needs at least {MIN_SIDE} px on "
                               "each side")
    im = Image.fromarray(rgb)
    if max(h, w) > KEEP_SIDE:
        scale = KEEP_SIDE / max(h, w)
        im = im.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.LANCZOS)
    out = io.BytesIO()
    im.save(out, format="PNG", compress_level=1)
    return out.getvalue()
