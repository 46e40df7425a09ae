"""Reading the uploaded image: multipart field `image` or a raw `image/*` body, size-capped.

The cap is checked against Content-Length before reading anything, and again while reading
(chunked bodies have no length, and a client may lie), so at most `limit` bytes are buffered.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from stylebox.service.errors import (
    MalformedBodyError,
    MissingImageError,
    PayloadTooLargeError,
    UnsupportedImageError,
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


async def _from_multipart(request: Request, limit: int) -> bytes:
    parser = MultiPartParser(request.headers, _limited(request, limit), max_files=4,
                             max_fields=16, max_part_size=64 * 1024)
    try:
        form = await parser.parse()
    except MultiPartException as e:
        raise MalformedBodyError(f"malformed multipart body: {e.message}") from None
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
