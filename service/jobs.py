"""Video jobs: a queue per server, their state in files on a folder that replicas share.

A job is a folder `VIDEO_DIR/<id>/` (the id is `secrets.token_urlsafe`, unguessable):

    input           the upload, as it was streamed in (deleted once the job ends)
    status.json     the job's `JobStatus`: its state, progress, owner and what to run;
                    replaced whole (written to a temp file, os.replace'd), so a reader on
                    any replica sees the old state or the new, never half
    result.mp4      the stylized clip: encoded as result.mp4.part and renamed only when
                    complete, so no replica (and no restart) ever serves half a file
    cancel          present once POST /videos/{id}/cancel was asked, by any replica: the
                    running job stops at its next frame, and the job reads as cancelled
                    whatever status.json says
    claim-<owner>   one per owner the job has had: made by a hard link, which fails when
                    the name exists, so of the replicas that try, exactly one gets it. The
                    owner makes it when it starts the job; a replica taking the queued job
                    of a dead one over makes it in the dead one's name (`JobStore.claim`)

A job's states and the moves between them are `State` and `TRANSITIONS`: queued -> running
-> done, and failed or cancelled from either; an ended job never changes.

DELETE /videos/{id} removes the folder: it is first renamed out of the way (`.gone-<id>-...`,
one atomic rename, so a second DELETE, a status read or the running replica's next write
finds nothing from then on), then deleted. A job whose folder is gone counts as cancelled
to the replica running it, which stops at its next frame.

The replica that took the upload queues the job (its own queue, VIDEO_WORKERS at a time)
and rewrites status.json at least every VIDEO_HEARTBEAT_S. Every replica answers for every
job from the files alone, so a load balancer may send the status polls, the download, the
cancel and the delete anywhere. A job whose status has not been refreshed for STALE_BEATS
heartbeats belongs to a replica that died: a running one reads as failed ("interrupted";
its partial output cannot be resumed), never "running" for ever; a queued one is taken over
by a live replica with room in its queue, and runs there. A replica shutting down hands its
queued jobs over at once (their owner becomes `released:<owner>`). Each replica sweeps the
folder: jobs past their expiry (VIDEO_RESULT_TTL_S after they ended) are deleted,
interrupted ones are written down as failed.
docs/video.md says why this design and not routing each job's requests to its replica.

The trainer jobs (service/trainer.py: new styles, best-quality renders, run by `stylebox
worker`) live in the same store, in its `trainer/` folder: `JobStore` and the `StoredJob`
fields and moves are theirs too; `JobStatus` and `VideoJobs` are the video jobs' own.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import secrets
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Self, get_args

import anyio
import numpy as np
from anyio import CapacityLimiter, from_thread, to_thread
from pydantic import BaseModel, ConfigDict, Field

from stylebox.service.controls import Controls
from stylebox.service.engine import Engine
from stylebox.service.http.errors import (
    JobInterruptedError,
    JobNotFoundError,
    NotReadyError,
    QueueFullError,
    StyleboxError,
    UnknownModelError,
    UnknownStyleError,
)
from stylebox.service.http.problems import TYPE_PREFIX
from stylebox.service.settings import DEFAULT_MODEL, Settings
from stylebox.service.styles import StyleMix
from stylebox.service.video import Cancelled, VideoInfo, VideoLimits, run_options, stylize_video

if TYPE_CHECKING:
    from stylebox.service.http.metrics import Metrics
    from stylebox.service.state import ServiceState

log = logging.getLogger("stylebox.jobs")

Clock = Callable[[], float]  # seconds since the epoch: statuses are compared across replicas

# -- a job's states, and the one definition of its fields --------------------------------------

State = Literal["queued", "running", "done", "failed", "cancelled"]
STATES: tuple[State, ...] = get_args(State)
ACTIVE: frozenset[State] = frozenset({"queued", "running"})
OUTCOMES: tuple[State, ...] = ("done", "failed", "cancelled")  # the ended states
# Where each state may go: queued -> running -> done; failed (a bad clip, a reload without
# its style, a server gone) or cancelled from either active state; an ended job stays ended.
TRANSITIONS: dict[State, frozenset[State]] = {
    "queued": frozenset({"running", "failed", "cancelled"}),
    "running": frozenset({"done", "failed", "cancelled"}),
    "done": frozenset(), "failed": frozenset(), "cancelled": frozenset(),
}
STALE_BEATS = 6  # heartbeats missed before a job's replica counts as gone
RELEASED = "released:"  # the owner of a queued job its replica handed over as it shut down
_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")
_SAVE_EVERY_S = 0.5  # progress is written at most this often (plus every heartbeat)
_ORPHAN_S = 3600.0  # a folder with no status (an upload that never finished) is swept after
_GONE = ".gone-"  # a deleted job's folder, renamed out of the way before it is removed


def iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat(
        timespec="seconds").replace("+00:00", "Z")


class Problem(BaseModel):
    """An RFC 9457 problem object (a failed job's `error`). service/http/openapi.py puts the one
    Problem schema every error response uses in its place."""

    model_config = {"extra": "allow"}
    type: str
    title: str
    status: int
    detail: str


def problem_of(e: StyleboxError) -> Problem:
    """The problem object a failed job reports (as the API would answer the error)."""
    return Problem(type=TYPE_PREFIX + e.slug, title=e.title, status=e.status,
                   detail=e.detail, **e.extensions)


# Why a job fails whose model this server does not serve (any more).
_MODEL_GONE = ("the job was submitted for a model this server does not serve (its "
               "STYLEBOX_EXTRA_MODELS differ, or changed since); submit the clip again")
_SERVER_ERROR = Problem(type="about:blank", title="Internal Server Error", status=500,
                        detail="the video could not be stylized (a server error, logged)")


class VideoJob(BaseModel):
    """A video job's status (GET /videos/{id})."""

    id: str = Field(description="the job id, unguessable")
    state: State
    frames_done: int = Field(ge=0)
    frames_total: int = Field(ge=0, description="an estimate until the job is done")
    progress: float = Field(ge=0, le=1)
    fps: float | None = Field(description="frames stylized per second so far")
    eta_s: float | None = Field(description="seconds left; null until known")
    error: Problem | None = Field(description="why the job failed (state failed)")
    result: str | None = Field(description="/videos/{id}/result once done")
    style: str = Field(description="the canonical style spec")
    model: str = Field(DEFAULT_MODEL, description="the served model that runs it (?model=)")
    width: int = Field(description="the result's width")
    height: int = Field(description="the result's height")
    duration_s: float | None = Field(description="the clip's duration, if the file says")
    created_at: str | None = Field(description="ISO 8601, UTC")
    expires_at: str | None = Field(description="when the job and its result are deleted "
                                                "(ISO 8601, UTC); null while it runs")


@dataclass(frozen=True)
class JobRequest:
    """What POST /videos asked for, resolved; kept in status.json, so a replica taking the
    job over runs the same. The style stays a blend of names: a queued job may run on
    another model than the one it was checked against (POST /admin/reload), so the names
    are looked up in the model that runs it (`weights`)."""

    mix: StyleMix
    controls: Controls
    stabilize: bool
    info: VideoInfo
    # The served model it runs on, by name (?model=): a job written before there were several
    # models ran on the default one.
    model: str = DEFAULT_MODEL

    @property
    def style(self) -> str:
        return self.mix.spec  # the canonical spec

    def weights(self, style_names: list[str]) -> np.ndarray:
        """The blend as `style_weights` (float32 (N,)) for a model with these styles;
        UnknownStyleError when one of the blend's styles is not among them (the model was
        reloaded without it since the job was submitted)."""
        used = StyleMix(tuple((name, w) for name, w in self.mix.parts if w > 0))
        gone = [name for name, _ in used.parts if name not in style_names]
        if gone:
            e = UnknownStyleError(gone, list(style_names))
            e.detail = (f"the model was reloaded after this job was submitted, and the new one "
                        f"has no {e.detail.removeprefix('unknown ')}; submit the clip again")
            raise e
        return used.vector(style_names)


class StoredJob(BaseModel):
    """What every job kept in a JobStore has (video jobs here, trainer jobs in
    service/trainer.py): its state and the moves between them, its owner and heartbeat, its
    times. Times are seconds since the epoch. Change it with `to` (a move TRANSITIONS allows)
    or `update`; never in place."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    id: str
    state: State
    eta_s: float | None = None
    error: Problem | None = None
    created: float
    heartbeat: float  # when its owner last wrote it
    started: float | None = None
    expires: float | None = None  # set when it ends
    owner: str  # the process that runs it (host:pid:token), or RELEASED + the one that did
    request: Any = None  # what to run (None: written by an older version; no one can run it)

    def to(self, state: State, **changes: Any) -> Self:
        """A copy moved to `state`, with `changes`; a move TRANSITIONS does not allow is a
        bug (ValueError)."""
        if state not in TRANSITIONS[self.state]:
            raise ValueError(f"job {self.id}: {self.state} -> {state} is not a move "
                             "a job makes")
        return self.model_copy(update={**changes, "state": state})

    def update(self, **changes: Any) -> Self:
        """A copy in the same state with `changes` (progress, heartbeat, owner)."""
        if "state" in changes:
            raise ValueError("a job changes state with `to`")
        return self.model_copy(update=changes)

    def interrupted(self) -> Problem:
        """The error of a job whose process stopped before it finished."""
        raise NotImplementedError

    def shown(self) -> BaseModel:
        """As the API shows it."""
        raise NotImplementedError


class JobStatus(StoredJob):
    """A video job as status.json holds it: the one record of a job, written by the replica
    that owns it (and by cancel, and by a sweep writing an interrupted job down)."""

    frames_done: int = 0
    frames_total: int = 0  # the container's estimate until done
    fps: float | None = None
    style: str  # the canonical spec
    width: int  # of the result
    height: int
    duration_s: float | None = None
    request: JobRequest | None = None  # what to run (None: written by an older version)

    def interrupted(self) -> Problem:
        return problem_of(JobInterruptedError(
            "the server running this job stopped before it finished; submit the clip again",
            frames_done=self.frames_done))

    def shown(self) -> VideoJob:
        """As GET /videos/{id} shows it (for the status every replica reads: JobStore.view)."""
        total, done = self.frames_total or 0, self.frames_done
        progress = 1.0 if self.state == "done" else min(0.99, done / total) if total else 0.0
        return VideoJob(
            id=self.id, state=self.state, frames_done=done, frames_total=total,
            progress=round(progress, 4), fps=self.fps,
            eta_s=self.eta_s if self.state in ACTIVE else None,
            error=self.error if self.state == "failed" else None,
            result=f"/videos/{self.id}/result" if self.state == "done" else None,
            style=self.style, model=self.request.model if self.request else DEFAULT_MODEL,
            width=self.width, height=self.height,
            duration_s=self.duration_s, created_at=iso(self.created),
            expires_at=iso(self.expires))


def default_dir() -> Path:
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(tempfile.gettempdir()) / f"stylebox-videos-{uid}"


def _claim_name(owner: str) -> str:
    return "claim-" + hashlib.sha256(owner.encode()).hexdigest()[:20]


class JobStore:
    """The files of every job under `root`; safe to use from any replica and any thread.
    `clock` gives the time a status is written and read at (time.time; the tests pass a
    fake one to move past a TTL or a heartbeat without waiting)."""

    def __init__(self, root: Path, ttl_s: float, heartbeat_s: float,
                 clock: Clock = time.time, *, status_type: type[StoredJob] = JobStatus,
                 files: tuple[str, ...] = ("input", "result.mp4"),
                 noun: str = "video job") -> None:
        self.root = root
        self.ttl_s = ttl_s
        self.stale_s = STALE_BEATS * heartbeat_s
        self.clock = clock
        self.status_type = status_type  # what status.json holds (video or trainer jobs)
        self.files = files  # a job's inputs, then its result: dropped when it ends without one
        self.noun = noun  # what the errors call a job

    def new_id(self) -> str:
        return secrets.token_urlsafe(18)  # 144 random bits, 24 characters

    def folder(self, job_id: str) -> Path:
        if not _ID.fullmatch(job_id):  # never a path outside root
            raise JobNotFoundError(f"no {self.noun} {job_id[:64]!r}")
        return self.root / job_id

    def input(self, job_id: str) -> Path:
        return self.folder(job_id) / "input"

    def result(self, job_id: str) -> Path:
        return self.folder(job_id) / self.files[-1]

    def cancel_marker(self, job_id: str) -> Path:
        return self.folder(job_id) / "cancel"

    def create(self, job_id: str) -> Path:
        folder = self.folder(job_id)
        folder.mkdir(parents=True)
        return folder

    def read(self, job_id: str) -> Any:
        """The job's status (a `status_type`), or None: unknown, deleted or unreadable."""
        try:
            return self.status_type.model_validate_json((self.folder(job_id) / "status.json")
                                                 .read_bytes())
        except (FileNotFoundError, NotADirectoryError):
            return None
        except (OSError, ValueError):  # ValidationError included
            return None  # unreadable: as good as gone (the sweeper removes it)

    def write(self, job_id: str, status: StoredJob) -> None:
        folder = self.folder(job_id)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".status.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(status.model_dump_json())
            os.replace(tmp, folder / "status.json")  # atomic: readers see old or new
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def cancelled(self, job_id: str) -> bool:
        """Cancel was asked (the marker), or the job was deleted (its folder is gone): the
        one place the marker is read."""
        return self.cancel_marker(job_id).exists() or not self.folder(job_id).is_dir()

    def end(self, status: StoredJob, state: State, at: float, **changes: Any) -> StoredJob:
        """`status` ended as `state` at time `at`: it expires `ttl_s` later (the one place
        that says when a job expires)."""
        return status.to(state, eta_s=None, expires=at + self.ttl_s, **changes)

    def stale(self, status: StoredJob, now: float) -> bool:
        """Its owner has not refreshed it for STALE_BEATS heartbeats: that replica is gone."""
        return now - status.heartbeat > self.stale_s

    def effective(self, status: StoredJob, now: float | None = None) -> StoredJob:
        """The status as every replica reads it: the cancel marker wins over an active state;
        a running job whose replica stopped refreshing it has failed (interrupted), and so
        has a queued one that no replica can take over (written by an older version,
        without its request). A stale queued job stays queued: a live replica takes it."""
        now = self.clock() if now is None else now
        if status.state in ACTIVE and self.cancelled(status.id):
            return self.end(status, "cancelled", now)
        if status.state in ACTIVE and self.stale(status, now) and (
                status.state == "running" or status.request is None
                or self._claim_died(status, now)):
            return self.end(status, "failed", status.heartbeat + self.stale_s,
                            error=status.interrupted())
        return status

    def _claim_died(self, status: StoredJob, now: float) -> bool:
        """A stale queued job claimed from its owner by a replica that did not get as far as
        writing the status down (it died within that moment): no one can claim it again."""
        claim = self.claimant(status.id, status.owner)
        return claim is not None and now - claim[1] > self.stale_s

    def view(self, status: StoredJob, now: float | None = None) -> BaseModel:
        """A status as GET /videos/{id} shows it."""
        return self.effective(status, now).shown()

    def claim(self, job_id: str, holder: str, claimant: str) -> bool:
        """Take the job from `holder`, the owner its status names: True for exactly one
        claimant, on any replica (a hard link to `claim-<holder>` fails if the name exists;
        atomic on a local disk and on NFS). The owner claims its own job as it starts it;
        a replica taking a dead one's queued job over claims it in that one's name, so of
        the two (and of every taker) one runs it. The file says who claimed it and when."""
        folder = self.folder(job_id)
        try:
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=".claim.", suffix=".tmp")
        except (FileNotFoundError, NotADirectoryError):
            return False  # deleted
        try:
            with os.fdopen(fd, "w") as f:
                f.write(f"{self.clock()!r} {claimant}")
            os.link(tmp, folder / _claim_name(holder))
            return True
        except (FileExistsError, FileNotFoundError):
            return False
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def claimant(self, job_id: str, holder: str) -> tuple[str, float] | None:
        """Who claimed the job from `holder` (itself, or a replica taking it over), and when;
        None while no one has."""
        try:
            at, _, who = (self.folder(job_id) / _claim_name(holder)).read_text().partition(" ")
            return who, float(at)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except (OSError, ValueError):
            return "?", 0.0  # unreadable: someone has it

    def orphans(self, owner: str, now: float | None = None) -> list[StoredJob]:
        """Queued jobs whose replica died (stale) or handed them over as it shut down, that
        `owner` may take over (no one has claimed them); the oldest first."""
        now = self.clock() if now is None else now
        found = []
        for status in self.statuses():
            if status.state == "queued" and status.owner != owner and \
                    (status.owner.startswith(RELEASED) or self.stale(status, now)) and \
                    self.effective(status, now).state == "queued" and \
                    self.claimant(status.id, status.owner) is None:
                found.append(status)
        return sorted(found, key=lambda s: s.created)

    def take(self, status: StoredJob, owner: str, now: float | None = None
             ) -> StoredJob | None:
        """Take over a queued job `orphans` found: its status, now `owner`'s, or None if
        another replica was first (or it was cancelled, deleted or started meanwhile)."""
        if not self.claim(status.id, status.owner, owner):
            return None
        current = self.read(status.id)  # read after the claim: no one else changes it now
        if current is None or current.state != "queued" or current.owner != status.owner \
                or self.cancelled(status.id):
            return None
        taken = current.update(owner=owner, heartbeat=self.clock() if now is None else now)
        try:
            self.write(status.id, taken)
        except OSError:
            return None
        return taken

    def current(self, job_id: str) -> Any:
        """The job's effective status as every replica reads it; 404 if it is unknown,
        deleted or expired."""
        stored = self.read(job_id)
        if stored is None:
            raise JobNotFoundError(f"no {self.noun} {job_id[:64]!r} (unknown, deleted or "
                                   "expired)")
        now = self.clock()
        status = self.effective(stored, now)
        if status.expires is not None and now > status.expires:
            raise JobNotFoundError(f"{self.noun} {job_id!r} has expired")
        return status

    def cancel(self, job_id: str, **changes: Any) -> None:
        """Mark an active job cancelled, for every replica and its runner: the marker (the
        runner stops at its next frame or step), the cancelled state (with `changes`), its
        uploads and any result gone (a .part file is its writer's to delete). 404 if it was
        deleted meanwhile."""
        try:
            self.cancel_marker(job_id).touch()
        except FileNotFoundError:
            raise JobNotFoundError(f"no {self.noun} {job_id!r} (deleted)") from None
        stored = self.read(job_id)
        if stored is not None and stored.state in ACTIVE:
            with contextlib.suppress(OSError):
                self.write(job_id, self.end(stored, "cancelled", self.clock(), **changes))
        with contextlib.suppress(OSError):
            self.drop_files(job_id, partial=False)

    def remove(self, job_id: str) -> bool:
        """Delete the job's folder; False if it was not there (already deleted, by any
        replica). The folder is renamed away first, atomically: from then on nothing can
        read the job, and a write into it (its replica's status, its encoder's rename of
        the result) fails instead of bringing it back."""
        folder = self.folder(job_id)
        grave = self.root / f"{_GONE}{job_id}-{secrets.token_hex(4)}"
        try:
            os.rename(folder, grave)
        except FileNotFoundError:
            return False
        shutil.rmtree(grave, ignore_errors=True)
        return True

    def drop_files(self, job_id: str, partial: bool = True) -> None:
        """The upload and any result: a job that ended without one to keep. `partial=False`
        leaves the .part files to the process still writing them (it deletes them as it
        stops)."""
        folder = self.folder(job_id)
        parts = (f"{self.files[-1]}.part",) if partial else ()
        for name in (*self.files, *parts):
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                (folder / name).unlink()

    def statuses(self) -> list[StoredJob]:
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return []
        return [s for s in map(self.read, filter(_ID.fullmatch, names)) if s is not None]

    def sweep(self, now: float | None = None) -> int:
        """Delete expired jobs, write interrupted ones down as failed; returns how many
        folders were removed. Safe to run on every replica at once."""
        now = self.clock() if now is None else now
        removed = 0
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return 0
        for name in names:
            if name.startswith(_GONE):  # a delete that stopped half-way (its server died)
                shutil.rmtree(self.root / name, ignore_errors=True)
                continue
            if not _ID.fullmatch(name):
                continue
            status = self.read(name)
            if status is None:
                try:
                    age = now - (self.root / name).stat().st_mtime
                    newest = max((p.stat().st_mtime for p in (self.root / name).iterdir()),
                                 default=0)
                except OSError:
                    continue
                if age > _ORPHAN_S and now - newest > _ORPHAN_S:
                    self.remove(name)
                    removed += 1
                continue
            shown = self.effective(status, now)
            if shown.state != status.state:  # its replica is gone, or it was cancelled
                self.drop_files(name)
                if shown.state == "failed":  # (cancel writes the cancelled state itself)
                    with contextlib.suppress(OSError):
                        self.write(name, shown)
            if shown.expires is not None and now > shown.expires:
                self.remove(name)
                removed += 1
        return removed


@dataclass
class _Local:
    """A job this server owns (queued or running here)."""

    id: str
    status: JobStatus  # replaced (under `lock`), never changed in place
    cancel: threading.Event = field(default_factory=threading.Event)  # stop: at the next frame
    lock: threading.Lock = field(default_factory=threading.Lock)
    saved: float = 0.0  # time.monotonic() of the last write
    frames: int = 0  # frames stylized, as counted in the metrics

    @property
    def request(self) -> JobRequest:
        assert self.status.request is not None  # a local job always has its request
        return self.status.request


class VideoJobs:
    """This server's video jobs: admission, the queue, the workers, heartbeat, takeover and
    sweep.

    Start it with `async with jobs.running(app):` (the app's lifespan does); requests use
    `reserve`, `submit`, `status`, `cancel` and `delete`. `clock` is the time statuses are
    written and read at (time.time), as for JobStore.
    """

    def __init__(self, settings: Settings, clock: Clock = time.time) -> None:
        self.settings = settings
        self.clock = clock
        root = Path(settings.video_dir) if settings.video_dir else default_dir()
        self.store = JobStore(root, settings.video_result_ttl_s, settings.video_heartbeat_s,
                              clock)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.limits = VideoLimits.from_settings(settings)
        self.local: dict[str, _Local] = {}
        self.reserved: set[str] = set()  # uploads being received, already counted
        self.metrics: Metrics | None = None  # the app's, once running
        self._claiming = 0  # places held while taking a job over
        self._send: Any = None  # the queue's sending end, once running
        self._service: ServiceState | None = None  # the app's state, once running
        self._last_sweep = -float("inf")

    @property
    def capacity(self) -> int:
        return self.settings.video_workers + self.settings.video_max_queue

    def _places_used(self) -> int:
        return len(self.local) + len(self.reserved) + self._claiming

    def counts(self) -> dict[str, int]:
        """This server's jobs by state (queued, running), for the metrics."""
        out = dict.fromkeys(sorted(ACTIVE), 0)
        for job in list(self.local.values()):
            out[job.status.state] = out.get(job.status.state, 0) + 1
        return out

    def reserve(self) -> str:
        """A new job id with its place in this server's queue, or 503 (before any upload
        is read). Release it with `release` if the upload is refused."""
        if self._send is None:
            raise NotReadyError("video jobs are not running yet",
                                self.settings.retry_after_s)
        if self._places_used() >= self.capacity:
            raise QueueFullError(
                f"{self._places_used()} video jobs are running or queued on "
                f"this server (at most {self.capacity}); retry later",
                self._retry_after(), max_queue=self.settings.video_max_queue)
        job_id = self.store.new_id()
        self.reserved.add(job_id)
        self.store.create(job_id)
        return job_id

    def _retry_after(self) -> int:
        # The running jobs' ETA, when known, is when a place frees up.
        etas = [j.status.eta_s for j in self.local.values()
                if j.status.state == "running" and j.status.eta_s]
        return max(self.settings.retry_after_s, int(min(etas)) + 1 if etas else 30)

    def release(self, job_id: str) -> None:
        self.reserved.discard(job_id)
        self.store.remove(job_id)

    def submit(self, job_id: str, request: JobRequest) -> VideoJob:
        """Queue a reserved job whose upload was probed; its status as GET shows it."""
        self.reserved.discard(job_id)
        now = self.clock()
        info = request.info
        w, h = info.out_size(request.controls.max_side)
        status = JobStatus(
            id=job_id, state="queued", frames_total=info.frames, style=request.style,
            width=w, height=h,
            duration_s=None if info.duration_s is None else round(info.duration_s, 3),
            created=now, heartbeat=now, owner=self.owner, request=request)
        job = _Local(job_id, status)
        self.local[job_id] = job
        self._save(job, force=True)
        self._send.send_nowait(job_id)  # the buffer holds `capacity`: never blocks
        return self.store.view(status, now)

    # -- any replica's jobs, from the files --------------------------------------------------

    def _read(self, job_id: str) -> JobStatus:
        """The job's effective status (JobStore.current); 404 if unknown or expired, or still
        being uploaded."""
        if job_id in self.reserved:
            raise JobNotFoundError(f"no video job {job_id!r} (unknown, deleted or expired)")
        return self.store.current(job_id)

    def status(self, job_id: str) -> VideoJob:
        return self._read(job_id).shown()

    def cancel(self, job_id: str) -> VideoJob:
        """Stop a queued or running job (its replica stops at the next frame; its upload and
        any partial result go) and return its status, `cancelled` from then on until it
        expires. A job that has already ended is left as it is (done, failed or cancelled):
        cancelling is idempotent."""
        current = self._read(job_id)  # 404 first
        if current.state not in ACTIVE:
            return current.shown()
        job = self.local.get(job_id)
        if job is not None:
            job.cancel.set()
        self.store.cancel(job_id)
        return self.status(job_id)

    def delete(self, job_id: str) -> None:
        """Delete a job, whatever its state: an active one is stopped first (its replica
        stops at the next frame), then its folder goes. From then on the job is unknown
        (404), on every replica."""
        if self._read(job_id).state in ACTIVE:  # 404 first
            job = self.local.get(job_id)
            if job is not None:
                job.cancel.set()
        if not self.store.remove(job_id):  # another DELETE, on any replica, was first
            raise JobNotFoundError(f"no video job {job_id!r} (deleted)")

    # -- this replica's workers ----------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def running(self, service: ServiceState) -> AsyncIterator[None]:
        """This replica's workers, heartbeat and sweep, for as long as the block lasts; each
        job runs on the app's engine and under its inference limiter (`service`: the app's
        state, service/state.py)."""
        self.store.root.mkdir(parents=True, exist_ok=True)
        self._service = service
        self.metrics = service.metrics
        self.metrics.watch_videos(self.counts)
        send, receive = anyio.create_memory_object_stream[str](self.capacity + 1)
        async with anyio.create_task_group() as tg:
            for _ in range(self.settings.video_workers):
                tg.start_soon(self._worker, receive.clone())
            self._send = send
            tg.start_soon(self._beat)
            try:
                yield
            finally:
                self._send = None
                for job in self.local.values():  # running ones stop at their next frame
                    job.cancel.set()
                send.close()
                receive.close()
                tg.cancel_scope.cancel()
        for job in list(self.local.values()):  # shut down before they ended
            if job.status.state == "queued":
                self._hand_over(job)
            else:
                self._end(job, "failed", error=job.status.interrupted())

    async def _worker(self, receive: Any) -> None:
        async with receive:
            async for job_id in receive:
                job = self.local.get(job_id)
                if job is None:
                    continue
                if self._stopped(job):
                    self._end(job, "cancelled")
                    continue
                if not await to_thread.run_sync(self.store.claim, job.id, self.owner,
                                                self.owner):
                    self._forget(job)  # another replica took it over (this one was stale)
                    continue
                try:
                    await self._run(job)
                except Exception:  # a bug: it fails this job, not the worker (nor the app)
                    log.exception("video job %s failed", job.id)
                    if job.status.state in ACTIVE:
                        self._end(job, "failed", error=_SERVER_ERROR)
                    self.local.pop(job.id, None)

    async def _beat(self) -> None:
        while True:
            await anyio.sleep(self.settings.video_heartbeat_s)
            await self.tick()

    async def tick(self) -> None:
        """One heartbeat: rewrite this server's jobs' statuses, take over the queued jobs of
        replicas that died (while there is room), and sweep the folder when it is due (every
        TTL/4, at least every second, at most every minute)."""
        for job in list(self.local.values()):
            await to_thread.run_sync(self._save, job, True)
        await self._adopt()
        sweep_every = max(1.0, min(60.0, self.settings.video_result_ttl_s / 4))
        if self.clock() - self._last_sweep >= sweep_every:
            self._last_sweep = self.clock()
            n = await to_thread.run_sync(self.store.sweep)
            if n:
                log.info("swept %d expired video job(s)", n)

    async def _adopt(self) -> None:
        if self._send is None or self._places_used() >= self.capacity:
            return
        for found in await to_thread.run_sync(self.store.orphans, self.owner):
            if self._send is None or self._places_used() >= self.capacity:
                return
            self._claiming += 1  # its place, while the claim is made
            try:
                taken = await to_thread.run_sync(self.store.take, found, self.owner)
            finally:
                self._claiming -= 1
            if taken is None or self._send is None:
                continue  # another replica was first (or the server is stopping: stale again)
            self.local[taken.id] = job = _Local(taken.id, taken, saved=time.monotonic())
            self._send.send_nowait(taken.id)
            log.info("video job %s taken over from %s", job.id, found.owner)

    def _stopped(self, job: _Local) -> bool:
        """Whether the job is to stop: cancel or DELETE was asked (on any replica), or this
        server is shutting down."""
        return job.cancel.is_set() or self.store.cancelled(job.id)

    def _save(self, job: _Local, force: bool = False) -> None:
        now = time.monotonic()
        with job.lock:
            if not force and now - job.saved < _SAVE_EVERY_S:
                return
            if job.status.state in ACTIVE and self._stopped(job):
                return  # cancel wrote the cancelled state, or DELETE removed the job
            if job.status.state == "queued" and self._taken_over(job):
                self._forget(job)  # a replica took it over while this one was stale
                return
            job.status = job.status.update(heartbeat=self.clock())
            job.saved = now
            with contextlib.suppress(OSError):  # e.g. the folder was deleted meanwhile
                self.store.write(job.id, job.status)

    def _taken_over(self, job: _Local) -> bool:
        claim = self.store.claimant(job.id, self.owner)
        return claim is not None and claim[0] != self.owner

    def _forget(self, job: _Local) -> None:
        if self.local.pop(job.id, None) is not None:
            log.warning("video job %s was taken over by another replica", job.id)

    def _hand_over(self, job: _Local) -> None:
        """A queued job, as this server shuts down: any replica may take it over at once."""
        self.local.pop(job.id, None)
        if not self.store.cancelled(job.id) and not self._taken_over(job):
            with contextlib.suppress(OSError):
                self.store.write(job.id, job.status.update(owner=RELEASED + self.owner))

    def _end(self, job: _Local, state: State, **changes: Any) -> State:
        """The one way a job of this server ends: written down as `state` with `changes`,
        or as cancelled if cancel or DELETE was asked meanwhile (its files go; the status is
        the canceller's to write). Counted in the metrics; returns the state it ended in."""
        self.local.pop(job.id, None)
        if state == "cancelled" or self.store.cancelled(job.id):
            with contextlib.suppress(OSError, JobNotFoundError):
                self.store.drop_files(job.id)
            self._count("cancelled")
            return "cancelled"
        with job.lock:
            job.status = self.store.end(job.status, state, self.clock(), **changes)
        self._save(job, force=True)
        with contextlib.suppress(FileNotFoundError, NotADirectoryError, JobNotFoundError):
            self.store.input(job.id).unlink()
        self._count(state)
        return state

    def _count(self, outcome: State) -> None:
        if self.metrics is not None:
            self.metrics.video_jobs_finished.labels(outcome).inc()

    async def _run(self, job: _Local) -> None:
        service = self._service
        assert service is not None  # jobs run only while `running`
        name = job.request.model
        if name not in service.served:  # a replica, or a restart, without that model
            gone = UnknownModelError(name, service.served)
            gone.detail = f"{gone.detail}; {_MODEL_GONE}"
            self._end(job, "failed", error=problem_of(gone))
            return
        engine: Engine | None = service.engines.get(name)  # the job runs on it to its end
        if engine is None:
            self._end(job, "failed", error=job.status.interrupted())
            return
        try:  # by name: the model may have been reloaded since the job was queued
            weights = job.request.weights(engine.style_names)
        except StyleboxError as e:
            self._end(job, "failed", error=problem_of(e))
            return
        with job.lock:
            job.status = job.status.to("running", started=self.clock())
        self._save(job, force=True)
        try:
            result = await to_thread.run_sync(self._process, job, engine, weights,
                                              service.limiter)
        except Cancelled:
            if self._send is None:  # the server is shutting down (or cancel was asked too)
                self._end(job, "failed", error=job.status.interrupted())
            else:
                self._end(job, "cancelled")
            return
        except StyleboxError as e:
            self._end(job, "failed", error=problem_of(e))
            return
        except Exception:  # e.g. its files went while it was finishing: then it is cancelled
            if self._end(job, "failed", error=_SERVER_ERROR) == "failed":
                log.exception("video job %s failed", job.id)
            return
        self._end(job, "done", frames_done=result.frames, frames_total=result.frames,
                  fps=round(result.fps, 2))
        log.info("video job %s done: %d frames %dx%d in %.1f s (%.1f FPS)", job.id,
                 result.frames, result.width, result.height, result.seconds, result.fps)

    def _process(self, job: _Local, engine: Engine, weights: np.ndarray,
                 limiter: CapacityLimiter) -> Any:
        """In a worker thread: the whole clip; each model call holds an inference slot."""
        req = job.request
        t0 = time.perf_counter()

        def infer(fn: Callable[[], np.ndarray]) -> np.ndarray:
            borrower = object()  # one slot of the app's limiter, as a /stylize request takes
            from_thread.run(limiter.acquire_on_behalf_of, borrower)
            try:
                return fn()
            finally:
                from_thread.run_sync(limiter.release_on_behalf_of, borrower)

        def progress(done: int) -> None:
            if self.metrics is not None:
                self.metrics.video_frames.inc(done - job.frames)
            job.frames = done
            elapsed = time.perf_counter() - t0
            fps = done / elapsed if elapsed > 0 else None
            with job.lock:
                total = max(job.status.frames_total or 0, done)
                job.status = job.status.update(
                    frames_done=done, frames_total=total,
                    fps=None if fps is None else round(fps, 2),
                    eta_s=round((total - done) / fps, 1) if fps and done >= 3 else None)
            self._save(job)

        return stylize_video(
            self.store.input(job.id), self.store.result(job.id), engine, weights,
            controls=req.controls, info=req.info, progress=progress,
            cancelled=lambda: self._stopped(job), infer=infer,
            **run_options(self.settings, stabilize=req.stabilize))
