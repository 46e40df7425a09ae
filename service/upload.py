"""Reading uploads: the image (multipart field `image` or a raw `image/*` body, in memory) and
the video (field `video` or a raw `video/*` body, streamed to a file), size-capped.

The cap is checked against Content-Length before reading anything, and again while reading
(chunked bodies have no length, and a client may lie), so at most `limit` bytes are buffered.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from anyio import to_thread
from fastapi import Request
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from stylebox.service.http.errors import (
    InvalidFormError,
    MalformedBodyError,
    MissingImageError,
    MissingVideoError,
    PayloadTooLargeError,
    UnsupportedImageError,
    UnsupportedVideoError,
)

FIELD = "image"
RAW_TYPES = ("application/octet-stream", "")


def _too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(f"the request body is larger than {limit} bytes",
                                max_upload_bytes=limit)


async def _limited(request: Request, limit: int) -> AsyncIterator[bytes]:
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        yield chunk
    request.state.upload_received = True


def upload_received(request: Request) -> bool:
    """Whether the request's whole body has been read (admission control's deadline answers
    408 when it had not, 503 when it had)."""
    return getattr(request.state, "upload_received", False)


async def read_image_upload(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise _too_large(limit)
    content_type = request.headers.get("content-type", "")
    media = content_type.split(";")[0].strip().lower()
    if media == "multipart/form-data":
        return await _from_multipart(request, limit)
    if media.startswith("image/") or media in RAW_TYPES:
        data = b"".join([chunk async for chunk in _limited(request, limit)])
        if not data:
            raise MissingImageError("no image: the request body is empty")
        return data
    raise UnsupportedImageError(
        f"Content-Type {media!r} is not accepted; send multipart/form-data with the file in "
        f"field {FIELD!r}, or the raw image with Content-Type image/*")


async def _parse_form(request: Request, limit: int) -> FormData:
    """The multipart form, at most `limit` bytes (4 files, 16 fields, 64 KiB per text part);
    400 if it does not parse. The caller closes it."""
    parser = MultiPartParser(request.headers, _limited(request, limit), max_files=4,
                             max_fields=16, max_part_size=64 * 1024)
    try:
        return await parser.parse()
    except MultiPartException as e:
        raise MalformedBodyError(f"malformed multipart body: {e.message}") from None


async def _from_multipart(request: Request, limit: int) -> bytes:
    form = await _parse_form(request, limit)
    try:
        upload = form.get(FIELD)
        if upload is None:
            fields = ", ".join(repr(k) for k in form) or "none"
            raise MissingImageError(f"no file in multipart field {FIELD!r} (fields sent: {fields})")
        if not isinstance(upload, UploadFile):
            raise MissingImageError(f"multipart field {FIELD!r} must be a file upload (with a "
                                    "filename), not a text field")
        data = await upload.read()
        if not data:
            raise MissingImageError(f"the file in field {FIELD!r} is empty (0 bytes)")
        return data
    finally:
        await form.close()


# -- video uploads: streamed to a file, never whole in memory ----------------------------------

VIDEO_FIELD = "video"
_FLUSH = 1 << 20  # bytes gathered before a write (in a worker thread: never on the loop)


class _FileSink:
    """Appends to `path` in ~1 MiB writes, each in a worker thread."""

    def __init__(self, path: Path) -> None:
        self.path, self.size, self._buf = path, 0, bytearray()
        self._file = open(path, "wb")  # noqa: SIM115 - closed in close()

    async def write(self, data: bytes) -> None:
        self._buf += data
        self.size += len(data)
        if len(self._buf) >= _FLUSH:
            await self.flush()

    async def flush(self) -> None:
        if self._buf:
            chunk, self._buf = bytes(self._buf), bytearray()
            await to_thread.run_sync(self._file.write, chunk)

    async def close(self) -> None:
        await self.flush()
        await to_thread.run_sync(self._file.close)


async def save_video_upload(request: Request, path: Path, limit: int) -> int:
    """The upload (a raw video/* or application/octet-stream body, or multipart field
    `video`) written to `path`, at most `limit` bytes; returns its size."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise _too_large(limit)
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media == "multipart/form-data":
        return await _video_from_multipart(request, path, limit)
    if not (media.startswith("video/") or media in RAW_TYPES or media == "image/gif"
            or media == "image/webp"):
        raise UnsupportedVideoError(
            f"Content-Type {media!r} is not accepted; send the clip as the raw body with "
            f"Content-Type video/* (or application/octet-stream), or multipart/form-data "
            f"with the file in field {VIDEO_FIELD!r}")
    sink = _FileSink(path)
    try:
        async for chunk in _limited(request, limit):
            await sink.write(chunk)
    finally:
        await sink.close()
    if not sink.size:
        raise MissingVideoError("no video: the request body is empty")
    return sink.size


async def _video_from_multipart(request: Request, path: Path, limit: int) -> int:
    """Multipart parsed as it streams (python-multipart's parser, the one Starlette uses),
    the `video` part's bytes appended to `path`: Starlette's own form parsing would spool
    the file to the temp folder, which is memory in a container."""
    _, params = parse_options_header(request.headers["content-type"])
    boundary = params.get(b"boundary")
    if not boundary:
        raise MalformedBodyError("malformed multipart body: no boundary")
    state = {"field": b"", "headers": [], "name": None, "file": False, "seen": []}
    pending: list[bytes] = []  # the video part's data from one chunk, written after it
    found = {"video": False}

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["headers"].append((state["field"].lower(), data[start:end]))
        state["field"] = b""

    def on_headers_finished() -> None:
        disposition = b"".join(v for k, v in state["headers"] if k == b"content-disposition")
        _, opts = parse_options_header(disposition)
        name = opts.get(b"name", b"").decode("latin-1")
        state["name"], state["file"] = name, b"filename" in opts
        state["seen"].append(name)
        state["headers"] = []
        if name == VIDEO_FIELD:
            if found["video"]:
                raise MalformedBodyError(f"more than one {VIDEO_FIELD!r} part")
            found["video"] = True
            if not state["file"]:
                raise MissingVideoError(f"multipart field {VIDEO_FIELD!r} must be a file upload "
                                        "(with a filename), not a text field")

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if state["name"] == VIDEO_FIELD:
            pending.append(data[start:end])

    parser = MultipartParser(boundary, {
        "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_headers_finished": on_headers_finished, "on_part_data": on_part_data})
    sink = _FileSink(path)
    try:
        async for chunk in _limited(request, limit):
            try:
                parser.write(chunk)
            except FormParserError as e:
                raise MalformedBodyError(f"malformed multipart body: {e}") from None
            if len(state["seen"]) > 16:
                raise MalformedBodyError("malformed multipart body: too many parts")
            for piece in pending:
                await sink.write(piece)
            pending.clear()
        parser.finalize()
    finally:
        await sink.close()
    if not found["video"]:
        fields = ", ".join(repr(k) for k in state["seen"]) or "none"
        raise MissingVideoError(f"no file in multipart field {VIDEO_FIELD!r} (fields sent: "
                                f"{fields})")
    if not sink.size:
        raise MissingVideoError(f"the file in field {VIDEO_FIELD!r} is empty (0 bytes)")
    return sink.size


# -- forms with several parts: POST /styles, POST /optimize ------------------------------------

async def read_form(request: Request, limit: int, files: tuple[str, ...],
                    fields: tuple[str, ...]) -> tuple[dict[str, bytes], dict[str, str]]:
    """A multipart/form-data body (at most `limit` bytes) with these file parts and text
    fields, each at most once; the files' bytes and the fields' text. A part the route does
    not take is refused (422), not ignored: a misspelt `tittle` would otherwise be lost."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise _too_large(limit)
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "multipart/form-data":
        raise UnsupportedImageError(f"Content-Type {media or 'none'!r} is not accepted; send "
                                    f"multipart/form-data with the file part(s) "
                                    f"{', '.join(files)}")
    form = await _parse_form(request, limit)
    try:
        got_files: dict[str, bytes] = {}
        got_fields: dict[str, str] = {}
        for key in set(form.keys()):
            values = form.getlist(key)
            if key not in files + fields:
                raise InvalidFormError(f"the form has a part {key!r} this route does not take "
                                       f"(it takes {', '.join(files + fields)})")
            if len(values) > 1:
                raise InvalidFormError(f"the form has {len(values)} parts named {key!r}; "
                                       "send it once")
            value = values[0]
            if key in files:
                if not isinstance(value, UploadFile):
                    raise InvalidFormError(f"part {key!r} must be a file upload (with a "
                                           "filename), not a text field")
                data = await value.read()
                if not data:
                    raise InvalidFormError(f"the file in part {key!r} is empty (0 bytes)")
                got_files[key] = data
            else:
                if isinstance(value, UploadFile):
                    raise InvalidFormError(f"part {key!r} must be a text field, not a file")
                got_fields[key] = value
        return got_files, got_fields
    finally:
        await form.close()
