"""Video jobs: a queue per server, their state in files on a folder that replicas share.

A job is a folder `VIDEO_DIR/<id>/` (the id is `secrets.token_urlsafe`, unguessable):

    input           the upload, as it was streamed in (deleted once the job ends)
    status.json     the job's state; replaced whole (written to a temp file, os.replace'd),
                    so a reader on any replica sees the old state or the new, never half
    result.mp4      the stylized clip: encoded as result.mp4.part and renamed only when
                    complete, so no replica (and no restart) ever serves half a file
    cancel          present once POST /videos/{id}/cancel was asked, by any replica: the
                    running job stops at its next frame, and the job reads as cancelled
                    whatever status.json says

DELETE /videos/{id} removes the folder: it is first renamed out of the way (`.gone-<id>-...`,
one atomic rename, so a second DELETE, a status read or the running replica's next write
finds nothing from then on), then deleted. A job whose folder is gone counts as cancelled
to the replica running it, which stops at its next frame.

The replica that took the upload runs the job (its own queue, VIDEO_WORKERS at a time) and
rewrites status.json at least every VIDEO_HEARTBEAT_S. Every replica answers for every job
from the files alone, so a load balancer may send the status polls, the download, the
cancel and the delete anywhere. A job whose status has not been refreshed for STALE_BEATS
heartbeats belongs to a replica that died: it reads as failed ("interrupted"), never
"running" for ever. Each replica sweeps the folder: jobs past their expiry
(VIDEO_RESULT_TTL_S after they ended) are deleted, interrupted ones are written down as
failed.
docs/video.md says why this design and not routing each job's requests to its replica.
"""

from __future__ import annotations

import contextlib
import json
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
from typing import Any

import anyio
import numpy as np
from anyio import CapacityLimiter, from_thread, to_thread

from stylebox.service.controls import Controls
from stylebox.service.engine import Engine
from stylebox.service.errors import (
    JobInterruptedError,
    JobNotFoundError,
    NotReadyError,
    QueueFullError,
    StyleboxError,
    UnknownStyleError,
)
from stylebox.service.problems import TYPE_PREFIX
from stylebox.service.settings import Settings
from stylebox.service.styles import StyleMix
from stylebox.service.tiling import TileConfig
from stylebox.service.video import Cancelled, VideoInfo, VideoLimits, stylize_video

log = logging.getLogger("stylebox.jobs")

STATES = ("queued", "running", "done", "failed", "cancelled")
ACTIVE = frozenset({"queued", "running"})
STALE_BEATS = 6  # heartbeats missed before a job's replica counts as gone
_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")
_SAVE_EVERY_S = 0.5  # progress is written at most this often (plus every heartbeat)
_ORPHAN_S = 3600.0  # a folder with no status (an upload that never finished) is swept after
_GONE = ".gone-"  # a deleted job's folder, renamed out of the way before it is removed


def iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat(
        timespec="seconds").replace("+00:00", "Z")


def problem_of(e: StyleboxError) -> dict[str, Any]:
    """The problem object a failed job reports (as the API would answer the error)."""
    return {"type": TYPE_PREFIX + e.slug, "title": e.title, "status": e.status,
            "detail": e.detail, **e.extensions}


def default_dir() -> Path:
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return Path(tempfile.gettempdir()) / f"stylebox-videos-{uid}"


class JobStore:
    """The files of every job under `root`; safe to use from any replica and any thread."""

    def __init__(self, root: Path, ttl_s: float, heartbeat_s: float) -> None:
        self.root = root
        self.ttl_s = ttl_s
        self.stale_s = STALE_BEATS * heartbeat_s

    def new_id(self) -> str:
        return secrets.token_urlsafe(18)  # 144 random bits, 24 characters

    def folder(self, job_id: str) -> Path:
        if not _ID.fullmatch(job_id):  # never a path outside root
            raise JobNotFoundError(f"no video job {job_id[:64]!r}")
        return self.root / job_id

    def input(self, job_id: str) -> Path:
        return self.folder(job_id) / "input"

    def result(self, job_id: str) -> Path:
        return self.folder(job_id) / "result.mp4"

    def cancel_marker(self, job_id: str) -> Path:
        return self.folder(job_id) / "cancel"

    def create(self, job_id: str) -> Path:
        folder = self.folder(job_id)
        folder.mkdir(parents=True)
        return folder

    def read(self, job_id: str) -> dict[str, Any] | None:
        try:
            return json.loads((self.folder(job_id) / "status.json").read_text())
        except (FileNotFoundError, NotADirectoryError):
            return None
        except (OSError, ValueError):
            return None  # unreadable: as good as gone (the sweeper removes it)

    def write(self, job_id: str, status: dict[str, Any]) -> None:
        folder = self.folder(job_id)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".status.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(status, f)
            os.replace(tmp, folder / "status.json")  # atomic: readers see old or new
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def cancelled(self, job_id: str) -> bool:
        """Cancel was asked (the marker), or the job was deleted (its folder is gone)."""
        return self.cancel_marker(job_id).exists() or not self.folder(job_id).is_dir()

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
        leaves the .part file to the replica still writing it (it deletes it as it stops)."""
        folder = self.folder(job_id)
        for name in ("input", "result.mp4", *(("result.mp4.part",) if partial else ())):
            with contextlib.suppress(FileNotFoundError):
                (folder / name).unlink()

    def view(self, status: dict[str, Any], now: float | None = None) -> dict[str, Any]:
        """A status as GET /videos/{id} shows it: the cancel marker wins, and an active job
        whose replica stopped refreshing it reads as failed."""
        now = time.time() if now is None else now
        state = status["state"]
        error = status.get("error")
        expires = status.get("expires")
        if state in ACTIVE and self.cancelled(status["id"]):
            state, expires = "cancelled", expires or now + self.ttl_s
        elif state in ACTIVE and now - status.get("heartbeat", 0) > self.stale_s:
            state, error = "failed", interrupted(status)
            expires = status.get("heartbeat", now) + self.stale_s + self.ttl_s
        total = status.get("frames_total") or 0
        done = status.get("frames_done", 0)
        progress = 1.0 if state == "done" else min(0.99, done / total) if total else 0.0
        return {
            "id": status["id"], "state": state, "frames_done": done, "frames_total": total,
            "progress": round(progress, 4), "fps": status.get("fps"),
            "eta_s": status.get("eta_s") if state in ACTIVE else None,
            "error": error if state == "failed" else None,
            "result": f"/videos/{status['id']}/result" if state == "done" else None,
            "style": status["style"], "width": status["width"], "height": status["height"],
            "duration_s": status.get("duration_s"), "created_at": iso(status["created"]),
            "expires_at": iso(expires),
        }

    def sweep(self, now: float | None = None) -> int:
        """Delete expired jobs, write interrupted ones down as failed; returns how many
        folders were removed. Safe to run on every replica at once."""
        now = time.time() if now is None else now
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
            shown = self.view(status, now)
            if shown["state"] not in ACTIVE and status["state"] in ACTIVE:
                self.drop_files(name)  # its replica is gone, or it was cancelled
                if shown["state"] == "failed":
                    with contextlib.suppress(OSError):
                        self.write(name, {**status, "state": "failed", "error": shown["error"],
                                          "expires": status.get("heartbeat", now)
                                          + self.stale_s + self.ttl_s})
            expires = status.get("expires")
            if shown["state"] == "failed" and status["state"] in ACTIVE:
                expires = status.get("heartbeat", now) + self.stale_s + self.ttl_s
            if expires is not None and now > expires:
                self.remove(name)
                removed += 1
        return removed


_SERVER_ERROR = {"type": "about:blank", "title": "Internal Server Error", "status": 500,
                 "detail": "the video could not be stylized (a server error, logged)"}


def interrupted(status: dict[str, Any]) -> dict[str, Any]:
    return problem_of(JobInterruptedError(
        "the server running this job stopped before it finished; submit the clip again",
        frames_done=status.get("frames_done", 0)))


@dataclass
class JobRequest:
    """What POST /videos asked for, resolved. The style stays a blend of names: a queued job
    may run on another model than the one it was checked against (POST /admin/reload), so
    the names are looked up in the model that runs it (`weights`)."""

    mix: StyleMix
    controls: Controls
    stabilize: bool
    info: VideoInfo

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


@dataclass
class _Local:
    """A job this server owns (queued or running here)."""

    id: str
    request: JobRequest
    status: dict[str, Any]
    cancel: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    saved: float = 0.0


class VideoJobs:
    """This server's video jobs: admission, the queue, the workers, heartbeat and sweep.

    Start it with `async with jobs.running(app):` (the app's lifespan does); requests use
    `reserve`, `submit`, `status`, `cancel` and `delete`.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        root = Path(settings.video_dir) if settings.video_dir else default_dir()
        self.store = JobStore(root, settings.video_result_ttl_s, settings.video_heartbeat_s)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.limits = VideoLimits.from_settings(settings)
        self.local: dict[str, _Local] = {}
        self.reserved: set[str] = set()  # uploads being received, already counted
        self._send: Any = None  # the queue's sending end, once running
        self._app: Any = None

    @property
    def capacity(self) -> int:
        return self.settings.video_workers + self.settings.video_max_queue

    def reserve(self) -> str:
        """A new job id with its place in this server's queue, or 503 (before any upload
        is read). Release it with `release` if the upload is refused."""
        if self._send is None:
            raise NotReadyError("video jobs are not running yet",
                                self.settings.retry_after_s)
        if len(self.local) + len(self.reserved) >= self.capacity:
            raise QueueFullError(
                f"{len(self.local) + len(self.reserved)} video jobs are running or queued on "
                f"this server (at most {self.capacity}); retry later",
                self._retry_after(), max_queue=self.settings.video_max_queue)
        job_id = self.store.new_id()
        self.reserved.add(job_id)
        self.store.create(job_id)
        return job_id

    def _retry_after(self) -> int:
        # The running jobs' ETA, when known, is when a place frees up.
        etas = [j.status.get("eta_s") for j in self.local.values()
                if j.status["state"] == "running" and j.status.get("eta_s")]
        return max(self.settings.retry_after_s, int(min(etas)) + 1 if etas else 30)

    def release(self, job_id: str) -> None:
        self.reserved.discard(job_id)
        self.store.remove(job_id)

    def submit(self, job_id: str, request: JobRequest) -> dict[str, Any]:
        """Queue a reserved job whose upload was probed; its status as GET shows it."""
        self.reserved.discard(job_id)
        now = time.time()
        info = request.info
        w, h = info.out_size(request.controls.max_side)
        status = {"id": job_id, "state": "queued", "frames_done": 0,
                  "frames_total": info.frames, "fps": None, "eta_s": None, "error": None,
                  "style": request.style, "width": w, "height": h,
                  "duration_s": None if info.duration_s is None else round(info.duration_s, 3),
                  "created": now, "heartbeat": now, "expires": None, "owner": self.owner,
                  "container": info.container, "audio": info.audio}
        job = _Local(job_id, request, status)
        self.local[job_id] = job
        self._save(job, force=True)
        self._send.send_nowait(job_id)  # the buffer holds `capacity`: never blocks
        return self.store.view(status, now)

    # -- any replica's jobs, from the files --------------------------------------------------

    def status(self, job_id: str) -> dict[str, Any]:
        status = self.store.read(job_id)
        if status is None or job_id in self.reserved:
            raise JobNotFoundError(f"no video job {job_id!r} (unknown, deleted or expired)")
        shown = self.store.view(status)
        if shown["expires_at"] and time.time() > (status.get("expires") or float("inf")):
            raise JobNotFoundError(f"video job {job_id!r} has expired")
        return shown

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Stop a queued or running job (its replica stops at the next frame; its upload and
        any partial result go) and return its status, `cancelled` from then on until it
        expires. A job that has already ended is left as it is (done, failed or cancelled):
        cancelling is idempotent."""
        shown = self.status(job_id)  # 404 first
        if shown["state"] not in ACTIVE:
            return shown
        try:
            self.store.cancel_marker(job_id).touch()
        except FileNotFoundError:  # deleted meanwhile
            raise JobNotFoundError(f"no video job {job_id!r} (deleted)") from None
        job = self.local.get(job_id)
        if job is not None:
            job.cancel.set()
        status = self.store.read(job_id)
        if status is not None:
            with contextlib.suppress(OSError):
                self.store.write(job_id, {**status, "state": "cancelled", "eta_s": None,
                                          "expires": time.time() + self.store.ttl_s})
        with contextlib.suppress(OSError):
            self.store.drop_files(job_id, partial=False)
        return self.status(job_id)

    def delete(self, job_id: str) -> None:
        """Delete a job, whatever its state: an active one is stopped first (its replica
        stops at the next frame), then its folder goes. From then on the job is unknown
        (404), on every replica."""
        shown = self.status(job_id)  # 404 first
        if shown["state"] in ACTIVE:
            job = self.local.get(job_id)
            if job is not None:
                job.cancel.set()
        if not self.store.remove(job_id):  # another DELETE, on any replica, was first
            raise JobNotFoundError(f"no video job {job_id!r} (deleted)")

    # -- this replica's workers ----------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def running(self, app: Any) -> AsyncIterator[None]:
        self.store.root.mkdir(parents=True, exist_ok=True)
        self._app = app
        send, receive = anyio.create_memory_object_stream[str](self.capacity + 1)
        async with anyio.create_task_group() as tg:
            for _ in range(self.settings.video_workers):
                tg.start_soon(self._worker, receive.clone())
            tg.start_soon(self._beat)
            self._send = send
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
            self._finish(job, "failed", error=interrupted(job.status))

    async def _worker(self, receive: Any) -> None:
        async with receive:
            async for job_id in receive:
                job = self.local.get(job_id)
                if job is None:
                    continue
                if job.cancel.is_set() or self.store.cancelled(job_id):
                    self._cancelled(job)
                    continue
                try:
                    await self._run(job)
                except Exception:  # a bug: it fails this job, not the worker (nor the app)
                    log.exception("video job %s failed", job.id)
                    self._finish(job, "failed", error=_SERVER_ERROR)

    async def _beat(self) -> None:
        every = self.settings.video_heartbeat_s
        sweep_every = max(1.0, min(60.0, self.settings.video_result_ttl_s / 4))
        last_sweep = 0.0
        while True:
            await anyio.sleep(every)
            for job in list(self.local.values()):
                await to_thread.run_sync(self._save, job, True)
            if time.monotonic() - last_sweep >= sweep_every:
                last_sweep = time.monotonic()
                n = await to_thread.run_sync(self.store.sweep)
                if n:
                    log.info("swept %d expired video job(s)", n)

    def _save(self, job: _Local, force: bool = False) -> None:
        now = time.time()
        with job.lock:
            if not force and now - job.saved < _SAVE_EVERY_S:
                return
            if job.status["state"] in ACTIVE and self.store.cancelled(job.id):
                return  # cancel wrote the cancelled state, or DELETE removed the job
            job.status["heartbeat"] = job.saved = now
            with contextlib.suppress(OSError):  # e.g. the folder was deleted meanwhile
                self.store.write(job.id, dict(job.status))

    def _cancelled(self, job: _Local) -> None:
        self.local.pop(job.id, None)
        self.store.drop_files(job.id)

    def _finish(self, job: _Local, state: str, **changes: Any) -> None:
        self.local.pop(job.id, None)
        if self.store.cancelled(job.id):
            self._cancelled(job)
            return
        with job.lock:
            job.status.update(state=state, eta_s=None,
                              expires=time.time() + self.store.ttl_s, **changes)
        self._save(job, force=True)
        with contextlib.suppress(FileNotFoundError, JobNotFoundError):
            self.store.input(job.id).unlink()

    async def _run(self, job: _Local) -> None:
        app = self._app
        engine: Engine | None = app.state.engine  # the job runs on this one to its end
        if engine is None:
            self._finish(job, "failed", error=interrupted(job.status))
            return
        try:  # by name: the model may have been reloaded since the job was queued
            weights = job.request.weights(engine.style_names)
        except StyleboxError as e:
            self._finish(job, "failed", error=problem_of(e))
            return
        with job.lock:
            job.status.update(state="running", started=time.time())
        self._save(job, force=True)
        try:
            result = await to_thread.run_sync(self._process, job, engine, weights,
                                              app.state.limiter)
        except Cancelled:
            if self.store.cancelled(job.id) or self._send is not None:
                self._cancelled(job)
            else:  # the server is shutting down
                self._finish(job, "failed", error=interrupted(job.status))
            return
        except StyleboxError as e:
            self._finish(job, "failed", error=problem_of(e))
            return
        except Exception:
            if self.store.cancelled(job.id):  # e.g. its files went while it was finishing
                self._cancelled(job)
                return
            log.exception("video job %s failed", job.id)
            self._finish(job, "failed", error=_SERVER_ERROR)
            return
        self._finish(job, "done", frames_done=result.frames, frames_total=result.frames,
                     fps=round(result.fps, 2))
        log.info("video job %s done: %d frames %dx%d in %.1f s (%.1f FPS)", job.id,
                 result.frames, result.width, result.height, result.seconds, result.fps)

    def _process(self, job: _Local, engine: Engine, weights: np.ndarray,
                 limiter: CapacityLimiter) -> Any:
        """In a worker thread: the whole clip; each model call holds an inference slot."""
        req, settings = job.request, self.settings
        t0 = time.perf_counter()

        def infer(fn: Callable[[], np.ndarray]) -> np.ndarray:
            borrower = object()  # one slot of the app's limiter, as a /stylize request takes
            from_thread.run(limiter.acquire_on_behalf_of, borrower)
            try:
                return fn()
            finally:
                from_thread.run_sync(limiter.release_on_behalf_of, borrower)

        def progress(done: int) -> None:
            elapsed = time.perf_counter() - t0
            fps = done / elapsed if elapsed > 0 else None
            total = max(job.status["frames_total"] or 0, done)
            with job.lock:
                job.status.update(frames_done=done, frames_total=total,
                                  fps=None if fps is None else round(fps, 2),
                                  eta_s=round((total - done) / fps, 1)
                                  if fps and done >= 3 else None)
            self._save(job)

        return stylize_video(
            self.store.input(job.id), self.store.result(job.id), engine, weights,
            controls=req.controls,
            momentum=settings.video_momentum if req.stabilize else 0.0,
            limits=self.limits, info=req.info,
            max_inference_pixels=settings.max_inference_pixels,
            tiling=TileConfig.from_settings(settings), progress=progress,
            cancelled=lambda: job.cancel.is_set() or self.store.cancelled(job.id),
            infer=infer)
