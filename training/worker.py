"""`stylebox worker`: run the trainer jobs that any `stylebox serve` replica accepts: a new
style from a painting (POST /styles), a style removed (DELETE /styles/{name}), a
best-quality render of one photo (POST /optimize).

    STYLEBOX_DATA=data stylebox worker

Run it beside the service with the same STYLEBOX_* settings (the job folder VIDEO_DIR and
the model MODEL_PATH, both shared with the servers). It needs torch (the train extra) and
the data a style trains with: the VGG-19 weights and the training photos (STYLEBOX_DATA or
--data-root, laid out as `stylebox train` expects). A worker runs one job at a time; start
more (on other cores or machines sharing the folders) to run more at once.

A style edit starts from the checkpoint the served model was exported from (its card says
which: model/lineage.py), trains or edits only that style's γ/β row, exports, and replaces
the model file in one rename; every server reloads it within MODEL_WATCH_S. Every other
row stays bit-identical. A worker that is killed leaves the model file as it was, and the
job reads as failed (interrupted) once its heartbeat is stale. SIGTERM stops the running
job at its next step (it fails: the worker was stopped) and then the worker.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import io
import logging
import os
import secrets
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from stylebox.errors import UserError, doc_parser
from stylebox.model import lineage
from stylebox.model.card import CardError, ModelCard
from stylebox.service.http.errors import (
    InvalidFormError,
    ModelNotEditableError,
    StyleboxError,
    StyleConflictError,
    TrainerJobInterruptedError,
)
from stylebox.service.jobs import ACTIVE, Problem, problem_of
from stylebox.service.settings import Settings
from stylebox.service.trainer import (
    PREVIEW,
    TrainerStatus,
    WorkerInfo,
    store_of,
    worker_beat,
    worker_gone,
)

log = logging.getLogger("stylebox.worker")
STYLE_MAX_STEPS = 600  # a new style's steps on a fast machine; the budget decides below that
# Photos a new style trains on: a few hundred steps of batch 4 see fewer crops than this, and
# decoding the whole bank (1,567 photos) would take minutes of the job's few.
STYLE_PHOTOS = 400
_SWEEP_S = 60.0


class Stop(Exception):  # noqa: N818 - a request to stop, not an error
    """The job is to stop: `cancelled` (the user asked) or the worker is stopping."""

    def __init__(self, cancelled: bool) -> None:
        super().__init__("cancelled" if cancelled else "worker stopping")
        self.cancelled = cancelled


def problem(e: BaseException) -> Problem:
    """A failed job's error: the problem a request would have got, or a server error."""
    if isinstance(e, StyleboxError):
        return problem_of(e)
    if isinstance(e, lineage.LineageError):
        return problem_of(ModelNotEditableError(str(e)))
    if isinstance(e, CardError):
        return problem_of(StyleConflictError(str(e)))
    if isinstance(e, UserError):  # bad data on the worker: missing VGG weights, photos
        return Problem(type="about:blank", title="Worker cannot run the job", status=503,
                       detail=str(e))
    return Problem(type="about:blank", title="Internal Server Error", status=500,
                   detail="the job failed on the worker (a server error, logged)")


@contextlib.contextmanager
def model_lock(model: Path) -> Iterator[None]:
    """One style edit of a model at a time, across workers sharing its folder."""
    with open(model.parent / f".{model.name}.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def sample_photo(card: ModelCard) -> np.ndarray | None:
    """The served model's sample photo (its card carries it), (H, W, 3) uint8."""
    sample = card.export.get("sample")
    if not isinstance(sample, dict) or "jpeg_base64" not in sample:
        return None
    with Image.open(io.BytesIO(base64.b64decode(sample["jpeg_base64"]))) as im:
        return np.asarray(im.convert("RGB"))


def read_rgb(path: Path) -> np.ndarray:
    """An uploaded image, upright, RGB (H, W, 3) uint8; 422 if it does not decode."""
    try:
        with Image.open(path) as im:
            return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise InvalidFormError(f"the uploaded image does not decode: {e}") from None


def write_image(rgb: np.ndarray, path: Path, fmt: str) -> None:
    """Write whole or not at all: a .part file renamed into place."""
    part = path.with_name(path.name + ".part")
    Image.fromarray(rgb).save(part, format=fmt, **({"quality": 88} if fmt == "JPEG" else {}))
    os.replace(part, path)


class Worker:
    """Takes queued trainer jobs from the shared folder, one at a time, and runs them."""

    def __init__(self, settings: Settings, *, poll_s: float = 1.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.store = store_of(settings, clock)
        self.model = Path(settings.model_path)
        self.poll_s = poll_s
        self.owner = f"worker:{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.started = clock()
        self.status: TrainerStatus | None = None  # the job running now
        self._paced: tuple[float, int] | None = None  # (time, step) of its first step
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self._last_sweep = 0.0

    # -- the loop ------------------------------------------------------------------------------

    def run(self, max_jobs: int | None = None, idle_exit_s: float | None = None) -> int:
        """Run jobs until SIGTERM/SIGINT (or `max_jobs` jobs, or `idle_exit_s` without one:
        for tests); returns the number of jobs run."""
        self.store.root.mkdir(parents=True, exist_ok=True)
        if self.settings.model_seed:
            lineage.seed_model(self.model, self.settings.model_seed)
        beat = threading.Thread(target=self._beat_loop, daemon=True, name="heartbeat")
        self._beat()
        beat.start()
        done, idle_since = 0, time.monotonic()
        try:
            while not self.stopping.is_set() and (max_jobs is None or done < max_jobs):
                status = self._next()
                if status is None:
                    if idle_exit_s is not None and time.monotonic() - idle_since > idle_exit_s:
                        break
                    self.stopping.wait(self.poll_s)
                    continue
                self._run(status)
                done, idle_since = done + 1, time.monotonic()
        finally:
            self.stopping.set()
            worker_gone(self.store, self.owner)
        return done

    def _next(self) -> TrainerStatus | None:
        for found in self.store.orphans(self.owner):
            taken = self.store.take(found, self.owner)
            if taken is not None:
                return taken
        return None

    def _beat_loop(self) -> None:
        while not self.stopping.wait(self.settings.video_heartbeat_s):
            self._beat()

    def _beat(self) -> None:
        now = self.store.clock()
        job = self.status.id if self.status else None
        with contextlib.suppress(OSError):
            worker_beat(self.store, WorkerInfo(owner=self.owner, heartbeat=now,
                                               started=self.started, job=job))
        self._save()
        if now - self._last_sweep >= _SWEEP_S:
            self._last_sweep = now
            with contextlib.suppress(OSError):
                self.store.sweep(now)

    # -- the running job's status --------------------------------------------------------------

    def _stopped(self) -> bool:
        return self.status is not None and self.store.cancelled(self.status.id)

    def _save(self) -> None:
        with self.lock:
            if self.status is None or (self.status.state in ACTIVE and self._stopped()):
                return  # cancel wrote the cancelled state, or DELETE removed the job
            self.status = self.status.update(heartbeat=self.store.clock())
            with contextlib.suppress(OSError):
                self.store.write(self.status.id, self.status)

    def _set(self, **changes: object) -> None:
        with self.lock:
            assert self.status is not None
            self.status = self.status.update(**changes)
        self._save()

    def _end(self, state: str, **changes: object) -> None:
        with self.lock:
            assert self.status is not None
            cancelled = self._stopped()
            if not cancelled:  # else the canceller wrote the cancelled state
                self.status = self.store.end(self.status, state, self.store.clock(), **changes)
        if not cancelled:
            self._save()
        with self.lock:
            job_id, self.status = self.status.id, None
        for name in self.store.files[:-1]:  # the uploads go; the preview and result stay
            with contextlib.suppress(OSError, StyleboxError):
                (self.store.folder(job_id) / name).unlink()

    def check(self) -> None:
        """Raise Stop when the job was cancelled or the worker is stopping."""
        if self._stopped():
            raise Stop(cancelled=True)
        if self.stopping.is_set():
            raise Stop(cancelled=False)

    def progress(self, step: int, steps: int, losses: dict[str, float], message: str) -> None:
        """A step done: raise Stop if the job is to stop, else show it (the ETA from the pace
        since the job's first step, not counting the set-up before it)."""
        self.check()
        now = time.monotonic()
        if self._paced is None:
            self._paced = (now, step)
        t1, s1 = self._paced
        eta = round((steps - step) * (now - t1) / (step - s1), 1) if step - s1 >= 2 else None
        self._set(step=step, steps=steps, eta_s=eta, message=message,
                  losses={k: round(v, 5) for k, v in losses.items()})

    def preview(self, rgb: np.ndarray) -> None:
        assert self.status is not None
        write_image(rgb, self.store.folder(self.status.id) / PREVIEW, "JPEG")
        if not self.status.preview:
            self._set(preview=True)

    # -- running one job -----------------------------------------------------------------------

    def _run(self, status: TrainerStatus) -> None:
        with self.lock:
            self.status = status.to("running", started=self.store.clock(), message="starting")
            self._paced = None
        self._save()
        log.info("job %s (%s) started", status.id, status.kind)
        old = signal.getsignal(signal.SIGTERM)
        try:
            kind = {"add-style": self._add_style, "remove-style": self._remove_style,
                    "optimize": self._optimize}[status.kind]
            changes = kind()
        except Stop as e:
            why = "cancelled" if e.cancelled else "the worker was stopped"
            self._end("cancelled" if e.cancelled else "failed", message=why,
                      error=None if e.cancelled else problem_of(TrainerJobInterruptedError(
                          "the worker was stopped before the job finished; the served model "
                          "is unchanged; submit the job again")))
            log.info("job %s stopped: %s", status.id, why)
            return
        except Exception as e:  # a failed job, never a dead worker
            if not isinstance(e, UserError):
                log.exception("job %s failed", status.id)
            self._end("failed", error=problem(e), message="failed")
            return
        finally:
            signal.signal(signal.SIGTERM, old)  # add-style's run may have swapped it
        self._end("done", **changes)
        log.info("job %s done", status.id)

    def _add_style(self) -> dict:
        from stylebox.model.checkpoint import read_checkpoint
        from stylebox.training.add_style import Hooks, add_style, checkpoint_config

        st = self.status
        assert st is not None and st.request is not None and st.request.style
        name, folder = st.request.style, self.store.folder(st.id)
        card = lineage.read_model_card(self.model)
        base = lineage.checkpoint_of(self.model, card)
        self._check_new(card, name)
        read_rgb(folder / "input")  # 422 before minutes of training
        self._set(message="loading VGG-19, the painting and the photos")
        hooks = Hooks(on_step=lambda s, n, losses: self.progress(s, n, losses, "training"),
                      on_preview=self.preview, preview_photo=sample_photo(card))
        out = folder / "style.pt"
        cfg = checkpoint_config(read_checkpoint(base), base)
        cfg = cfg.replace(max_photos=min(cfg.max_photos or STYLE_PHOTOS, STYLE_PHOTOS))
        result = add_style(base, folder / "input", name, out, cfg=cfg, title=st.request.title,
                           source="an uploaded painting", steps=STYLE_MAX_STEPS,
                           budget_s=self.settings.trainer_style_seconds, progress=False,
                           resume=False, preview_every=0, hooks=hooks)
        if result["stopped"] == "signal":  # its runner caught SIGTERM: the worker stops
            self.stopping.set()
            raise Stop(cancelled=False)
        self.check()
        self._set(message="exporting and swapping the model in", eta_s=None)
        made = self._publish(lambda g, c, cfg: self._append(g, c, cfg, out, folder))
        return {"made": made, "message": f"{name} is served by {made}"}

    def _check_new(self, card: ModelCard, name: str) -> None:
        if name in card.style_names:
            raise StyleConflictError(f"the model already has a style named {name!r}")
        cap = self.settings.trainer_max_styles
        if card.n_styles >= cap:
            raise StyleConflictError(f"the model holds {card.n_styles} styles, the most "
                                     f"allowed (TRAINER_MAX_STYLES={cap})")

    def _append(self, generator, card, config, trained_path: Path, folder: Path):
        """The trained row appended to the served checkpoint as it is now (another job may
        have changed it while this one trained: only its style rows, which is checked)."""
        import torch

        from stylebox.model.checkpoint import load_checkpoint
        from stylebox.model.edit import append_style, edited_config, is_style_table, log_edit

        trained, trained_card, _ = load_checkpoint(trained_path)
        style = trained_card.styles[-1]
        self._check_new(card, style.name)
        ours, theirs = trained.state_dict(), generator.state_dict()
        if ours.keys() != theirs.keys() or any(
                not torch.equal(ours[k], theirs[k]) for k in ours if not is_style_table(k)):
            raise StyleConflictError("the served model was replaced by another network while "
                                     "this style trained; submit the painting again")
        new, new_card = append_style(generator, card, style)
        with torch.no_grad():
            for k, p in new.named_parameters():
                if is_style_table(k):
                    p[-1] = ours[k][-1]
        record = dict(trained_card.training["style_edits"][-1])
        painting = self._keep_painting(folder / "input", style.name)
        log_edit(new_card, **{**record, "image": painting.name, "via": "upload",
                              "job": folder.name})
        config = edited_config(config, "append", style.name, path=str(painting),
                               title=style.title, source=style.source)
        return new, new_card, config

    def _keep_painting(self, upload: Path, name: str) -> Path:
        """The painting, kept beside the model (a best-quality render toward the style finds
        it there), in the format it came in."""
        with Image.open(upload) as im:
            ext = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp"}.get(im.format or "", ".png")
        dst = self.model.resolve().parent / "paintings" / f"{name}{ext}"
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(dst.name + ".part")
        tmp.write_bytes(upload.read_bytes())
        os.replace(tmp, dst)
        return dst

    def _remove_style(self) -> dict:
        st = self.status
        assert st is not None and st.request is not None and st.request.style
        name = st.request.style
        self._set(message="removing the style and exporting")

        def remove(generator, card, config):
            from stylebox.model.edit import edited_config, remove_style

            added = [e for e in card.training.get("style_edits", [])
                     if e.get("op") == "add" and e.get("name") == name]
            if name not in card.style_names:
                raise StyleConflictError(f"the model has no style named {name!r}")
            if not added or added[-1].get("via") != "upload":
                raise StyleConflictError(f"{name!r} was not added from an upload; only those "
                                         "can be removed here")
            generator, card = remove_style(generator, card, name)
            return generator, card, edited_config(config, "remove", name)

        made = self._publish(remove)
        for old in (self.model.resolve().parent / "paintings").glob(f"{name}.*"):
            with contextlib.suppress(OSError):
                old.unlink()
        return {"made": made, "message": f"{name} removed; {made} is served"}

    def _publish(self, edit: Callable) -> str:
        """Apply `edit` to the served model's checkpoint, export, swap the model file in (one
        rename); returns the new model's name@version. Under the model's lock: two workers
        editing one model take turns, each on the other's result."""
        from stylebox.model.checkpoint import load_checkpoint, save_checkpoint
        from stylebox.model.export import export_onnx

        model = self.model
        with model_lock(model):
            served = lineage.read_model_card(model)
            generator, card, state = load_checkpoint(lineage.checkpoint_of(model, served))
            generator, card, config = edit(generator, card, state.get("config"))
            self.check()  # last moment a cancel can keep the model as it was
            card.version = f"{card.version.split('+')[0]}+{len(card.training['style_edits'])}"
            folder = model.parent / "checkpoints"
            tmp = folder / f".{model.stem}.{secrets.token_hex(4)}.pt"
            save_checkpoint(tmp, generator, card, config=config)
            stored = lineage.stored_name(model, lineage.sha256_of(tmp))
            os.replace(tmp, stored)
            onnx_tmp = model.parent / f".{model.stem}.{secrets.token_hex(4)}.onnx"
            try:
                export_onnx(generator, card, onnx_tmp,
                            export_size=int(served.export.get("export_size", 256)),
                            sample=served.export.get("sample"),
                            checkpoint=lineage.entry(stored, model))
                lineage.replace_atomically(onnx_tmp, model)
            finally:
                onnx_tmp.unlink(missing_ok=True)
        log.info("model %s is now %s@%s (%d styles)", model, card.name, card.version,
                 card.n_styles)
        return f"{card.name}@{card.version}"

    def _optimize(self) -> dict:
        from stylebox.training.optimize import OptimizeCancelled, optimize_photo

        st = self.status
        assert st is not None and st.request is not None
        req, folder = st.request, self.store.folder(st.id)
        photo = read_rgb(folder / "input")
        painting = folder / "painting"
        ckpt = lineage.checkpoint_of(self.model)
        last = {"preview": -1e9}
        self._set(message="loading VGG-19 and the style")

        def progress(p) -> None:
            self.progress(p.iteration, p.iterations,
                          {"style": p.style, "content": p.content}, "optimising")
            if time.monotonic() - last["preview"] > 10:
                last["preview"] = time.monotonic()
                self.preview(p.image())

        try:
            result = optimize_photo(
                photo, ckpt, style=None if painting.is_file() else req.style,
                painting=painting if painting.is_file() else None,
                max_side=req.max_side or 512,
                **({"iterations": req.iterations} if req.iterations else {}),
                **({"time_limit_s": req.time_limit_s} if req.time_limit_s else {}),
                progress=progress, cancelled=lambda: self._stopped() or self.stopping.is_set())
        except OptimizeCancelled:
            raise Stop(cancelled=self._stopped()) from None
        write_image(result.image, self.store.result(st.id), "PNG")
        self.preview(result.image)
        return {"step": result.iterations, "steps": result.iterations,
                "message": f"done in {result.seconds:.0f} s ({result.stopped} budget)",
                "losses": {"style": round(result.style_loss, 5),
                           "content": round(result.content_loss, 5),
                           "start_style": round(result.start_style, 5),
                           "start_content": round(result.start_content, 5)}}


def main(argv: list[str] | None = None) -> int:
    p = doc_parser("stylebox worker", __doc__)
    p.add_argument("--data-root", help="VGG weights and training photos (default: "
                                       "$STYLEBOX_DATA, else each checkpoint's own)")
    p.add_argument("--poll", type=float, default=1.0, help="seconds between looks for a job")
    p.add_argument("--max-jobs", type=int, help="exit after this many jobs")
    p.add_argument("--idle-exit", type=float, help="exit after this many seconds without a job")
    args = p.parse_args(argv)
    if args.data_root:
        os.environ["STYLEBOX_DATA"] = args.data_root
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                                                   "%(message)s")
    settings = Settings()
    worker = Worker(settings, poll_s=args.poll)

    def stop(signum: int, _frame: object) -> None:
        log.info("signal %d: stopping after (or inside) the current job", signum)
        worker.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("worker %s: jobs in %s, model %s", worker.owner, worker.store.root, worker.model)
    n = worker.run(max_jobs=args.max_jobs, idle_exit_s=args.idle_exit)
    log.info("worker %s: %d job(s) run; stopped", worker.owner, n)
    return 0
