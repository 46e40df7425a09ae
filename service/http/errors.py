"""Errors the service and the CLI raise on bad input, each with its HTTP status.

`service.http.problems` turns them into RFC 9457 bodies; they are `UserError`s, so the `stylebox`
command prints `detail` in its one error line and exits 2.
Keeping the status on the error (not in the router) means every entry point agrees.
"""

from __future__ import annotations

import difflib
from typing import Any

from stylebox.errors import UserError


class StyleboxError(UserError):
    """An expected failure caused by the request; never a 5xx unless it is 503."""

    status: int = 400
    title: str = "Bad request"
    slug: str = "bad-request"  # the problem type is urn:stylebox:problem:<slug>
    headers: dict[str, str] | None = None  # response headers, e.g. Retry-After

    def __init__(self, detail: str, **extensions: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extensions = extensions


class UnknownStyleError(StyleboxError):
    status, title, slug = 404, "Unknown style", "unknown-style"

    def __init__(self, unknown: list[str], valid: list[str]) -> None:
        names = ", ".join(repr(n) for n in unknown)
        super().__init__(
            f"unknown style {names}; valid styles: {', '.join(valid)}",
            unknown_styles=unknown, valid_styles=valid,
        )


class UnknownModelError(StyleboxError):
    """`?model=NAME` names no model this server serves (STYLEBOX_EXTRA_MODELS names them)."""

    status, title, slug = 404, "Unknown model", "unknown-model"

    def __init__(self, unknown: str, valid: list[str]) -> None:
        super().__init__(f"unknown model {unknown!r}; this server serves: {', '.join(valid)}",
                         unknown_model=unknown, valid_models=valid)


class StyleSpecError(StyleboxError):
    """`detail` shows the API's syntax (`style=candy`); `reason` is what is wrong alone, for
    callers with another syntax (`stylebox stylize -s candy`)."""

    status, title, slug = 422, "Invalid style spec", "invalid-style-spec"

    def __init__(self, detail: str, valid: list[str]) -> None:
        self.reason, self.valid = detail, list(valid)
        super().__init__(
            f"{detail}; expected e.g. 'style=candy' or 'style=candy:0.7,mosaic:0.3' "
            f"(valid styles: {', '.join(valid)})",
            valid_styles=valid,
        )


class UnknownQueryParameterError(StyleboxError):
    """A query parameter the route does not take. Refused, not ignored: a misspelt one
    (`strenght=0.2`, `preserve_colour=true`) would otherwise leave its default in force
    without a word. `detail` names the unknown ones and lists those the route takes."""

    status, title, slug = 422, "Unknown query parameter", "unknown-query-parameter"

    def __init__(self, unknown: list[str], accepted: list[str], where: str) -> None:
        names = ", ".join(repr(n) + _did_you_mean(n, accepted) for n in unknown)
        takes = f"takes: {', '.join(accepted)}" if accepted else "takes no query parameters"
        plural = "s" if len(unknown) > 1 else ""
        super().__init__(f"unknown query parameter{plural} {names}; {where} {takes}",
                         unknown_parameters=unknown, valid_parameters=accepted)


def _did_you_mean(name: str, accepted: list[str]) -> str:
    close = difflib.get_close_matches(name, accepted, n=1, cutoff=0.7)
    return f" (did you mean {close[0]!r}?)" if close else ""


class MissingImageError(StyleboxError):
    """No image: an empty body, or a multipart form without its `image` field."""

    status, title, slug = 422, "Missing image", "missing-image"


class UnsupportedImageError(StyleboxError):
    """Bytes that are no image in a format the decoder accepts (text, a PDF, an executable),
    or a Content-Type that is not an image."""

    status, title, slug = 415, "Unsupported media type", "unsupported-media-type"


class CorruptImageError(StyleboxError):
    """A truncated or damaged image. 422, not 400: the request is well-formed HTTP; its
    image content is what cannot be processed."""

    status, title, slug = 422, "Corrupt image", "corrupt-image"


class ImageTooLargeError(StyleboxError):
    """Too many pixels by the header, or a shape whose network runs cost too much
    (service/pipeline.py)."""

    status, title, slug = 413, "Image too large", "image-too-large"


class PayloadTooLargeError(StyleboxError):
    """A body over MAX_UPLOAD_BYTES, counted while it streams in."""

    status, title, slug = 413, "Payload too large", "payload-too-large"


class UnauthorizedError(StyleboxError):
    """No API key, or a wrong one, on a route that needs it (service/http/auth.py)."""

    status, title, slug = 401, "Unauthorized", "unauthorized"

    def __init__(self, detail: str, challenge: str) -> None:
        super().__init__(detail)
        self.headers = {"WWW-Authenticate": challenge}


class RetryLaterError(StyleboxError):
    """A 503 the client may retry: the answer carries Retry-After (seconds)."""

    status = 503

    def __init__(self, detail: str, retry_after_s: int, **extensions: Any) -> None:
        super().__init__(detail, **extensions)
        self.headers = {"Retry-After": str(retry_after_s)}


class OverloadedError(RetryLaterError):
    """Admission control is at capacity: every request slot, or every live session, taken
    (service/http/admission.py); Retry-After says when to try again."""

    status, title, slug = 503, "Service overloaded", "overloaded"


class DeadlineError(RetryLaterError):
    """An admitted request whose body arrived but whose work did not finish within
    REQUEST_TIMEOUT_S: the server is busy (service/http/admission.py)."""

    status, title, slug = 503, "Request timeout", "timeout"


class NotReadyError(RetryLaterError):
    status, title, slug = 503, "Service not ready", "not-ready"


class OutputFormatError(StyleboxError):
    """The result cannot be written in the format asked for (e.g. a WebP side over 16383)."""

    status, title, slug = 422, "Cannot encode output", "cannot-encode"


class MalformedBodyError(StyleboxError):
    """A multipart body that does not parse, or has too many parts."""

    status, title, slug = 400, "Malformed request body", "malformed-body"


class AdminDisabledError(StyleboxError):
    """An admin route on a server with no API key, where admin is off unless
    STYLEBOX_ALLOW_ADMIN_WITHOUT_KEY says otherwise."""

    status, title, slug = 403, "Admin endpoints disabled", "admin-disabled"


class ModelReloadError(StyleboxError):
    # 422: the request is fine, but the file it points the server at cannot be served; the
    # model that was loaded keeps serving.
    status, title, slug = 422, "Model cannot be loaded", "model-load-failed"


# -- video files (service/video.py, service/jobs.py) -------------------------------------------

class MissingVideoError(StyleboxError):
    """No video: an empty body, or a multipart form without its `video` field."""

    status, title, slug = 422, "Missing video", "missing-video"


class UnsupportedVideoError(StyleboxError):
    """Bytes in no container the decoder reads (random bytes, a text file), a still image,
    a file with no video stream (audio only), or a Content-Type that is not a video."""

    status, title, slug = 415, "Unsupported video", "unsupported-video"


class CorruptVideoError(StyleboxError):
    """A container that starts as a video but cannot be read through: truncated (an MP4 cut
    before its index), damaged packets, a stream that decodes no frame."""

    status, title, slug = 422, "Corrupt video", "corrupt-video"


class VideoTooLargeError(StyleboxError):
    """Over a video bound: duration, frame count or frame size (after max_side)."""

    status, title, slug = 413, "Video too large", "video-too-large"


class UploadTimeoutError(StyleboxError):
    """An upload that did not arrive in time: an admitted request's body within
    REQUEST_TIMEOUT_S (service/http/admission.py), a video within VIDEO_UPLOAD_TIMEOUT_S (it
    held a place in the queue). A stalled client keeps neither for ever."""

    status, title, slug = 408, "Request timeout", "request-timeout"
    headers = {"Connection": "close"}


class QueueFullError(RetryLaterError):
    """VIDEO_MAX_QUEUE jobs already wait on this server; Retry-After says when to try again."""

    status, title, slug = 503, "Video queue full", "queue-full"


class JobNotFoundError(StyleboxError):
    """No video job with that id: never made, deleted, or expired (VIDEO_RESULT_TTL_S)."""

    status, title, slug = 404, "Unknown video job", "unknown-job"


class JobNotDoneError(StyleboxError):
    """The result of a job that is still queued or running, or that failed or was
    cancelled."""

    status, title, slug = 409, "Video not ready", "job-not-done"


class JobInterruptedError(StyleboxError):
    """The job's server stopped (a restart, a crash) before the job finished: its status is
    no longer refreshed. Not the upload's fault, so it is never raised on a request: it is
    the `error` of a failed job, and submitting the clip again is the remedy."""

    status, title, slug = 503, "Video job interrupted", "job-interrupted"


class LiveMessageError(StyleboxError):
    """A WebSocket /live message that cannot be used: control JSON that does not parse or has
    a bad field, or a frame sent before any style was chosen. The session goes on."""

    status, title, slug = 422, "Invalid live message", "invalid-live-message"


# -- trainer jobs (service/trainer.py, `stylebox worker`) --------------------------------------

class NoWorkerError(RetryLaterError):
    """A trainer job asked for where no `stylebox worker` runs: nothing would ever run it, so
    it is refused at once instead of queued. `detail` says how to start one."""

    status, title, slug = 503, "No trainer worker", "no-worker"


class TrainerQueueFullError(QueueFullError):
    """TRAINER_MAX_QUEUE trainer jobs already wait (on every replica together)."""

    title = "Trainer queue full"


class StyleConflictError(StyleboxError):
    """A style edit that clashes with the model as it is: a name it already has (or that a
    queued job is adding), the most styles a model may hold, a style that was not added from
    an upload (only those may be deleted here)."""

    status, title, slug = 409, "Style conflict", "style-conflict"


class InvalidStyleNameError(StyleboxError):
    status, title, slug = 422, "Invalid style name", "invalid-style-name"


class InvalidFormError(StyleboxError):
    """A multipart form without a field it needs, or with one that cannot be used."""

    status, title, slug = 422, "Invalid form", "invalid-form"


class TrainerJobInterruptedError(JobInterruptedError):
    """The worker running a trainer job stopped (killed, crashed, its machine gone) before the
    job ended; the served model is untouched, and submitting the job again is the remedy."""

    title = "Job interrupted"


class ModelNotEditableError(StyleboxError):
    """The served model does not record the checkpoint it was exported from (or it is not
    beside it), so no style can be added or removed; `detail` says how to fix it."""

    status, title, slug = 409, "Model cannot be edited", "model-not-editable"
