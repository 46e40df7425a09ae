"""Real files for Schemathesis' positive data: schemathesis.toml loads this module.

An upload's schema is `format: binary` under a media type (`image/*`, `video/*`,
`application/octet-stream`, or a multipart part's `encoding.contentType`). No schema can say
"these bytes decode as an image of at least 64 px", so without help Schemathesis sends random
bytes or its 1 px samples, and the server rightly refuses them (415, 422). Registering a
strategy per media type makes every schema-valid upload a file this server reads, so the
positive-data check holds at its default statuses.

The files are small and differ per draw (size, colours): 64-96 px, 2 frames where the type
can animate, because POST /videos takes an animated GIF or WebP as a clip and refuses a
still one.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
import schemathesis
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from PIL import Image
from schemathesis.core.transforms import to_wire_text

from stylebox.videobench import make_clip

_SIDES = st.integers(64, 96)


def _frames(width: int, height: int, seed: int, n: int) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    big = np.kron(base, np.ones((8, 8, 1), np.uint8))[:height, :width]  # (H, W, 3) blocks
    return [Image.fromarray(np.roll(big, 4 * i, axis=1)) for i in range(n)]


def _encode(fmt: str, width: int, height: int, seed: int) -> bytes:
    animated = fmt in ("GIF", "WEBP")
    frames = _frames(width, height, seed, 2 if animated else 1)
    buf = io.BytesIO()
    extra = {"save_all": True, "append_images": frames[1:], "duration": 100, "loop": 0} \
        if animated else {}
    frames[0].save(buf, format=fmt, **extra)
    return buf.getvalue()


def _images(fmt: str) -> st.SearchStrategy[bytes]:
    return st.builds(lambda w, h, s: _encode(fmt, w, h, s), _SIDES, _SIDES,
                     st.integers(0, 2**16))


def _clip(width: int, height: int) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        return make_clip(Path(tmp) / "clip.mp4", width // 2 * 2, height // 2 * 2, 3).read_bytes()


for media, fmt in (("image/png", "PNG"), ("image/jpeg", "JPEG"), ("image/gif", "GIF"),
                   ("image/webp", "WEBP")):
    schemathesis.openapi.media_type(media, _images(fmt))
schemathesis.openapi.media_type("video/mp4", st.builds(_clip, _SIDES, _SIDES))
# Every other `format: binary` value (an `application/octet-stream` body, a multipart part
# without a media type): an animated GIF, which every upload operation reads. Registered as
# the format, not the media type, so the built-in serializer keeps sending the documented
# examples (text) of those bodies.
schemathesis.openapi.format("binary", _images("GIF"))


@schemathesis.hook
def filter_case(ctx, case) -> bool:
    """Each multipart case goes as what it is on the wire: a positive one only when the form
    the server receives is valid data, a negative one only when it is not."""
    form = getattr(case.body, "body", case.body)  # a form with part media types wraps it
    meta = case.meta
    if meta is None or not isinstance(form, dict) or case.media_type != "multipart/form-data":
        return True
    valid = _valid_on_the_wire(case, form)
    if meta.generation.mode is schemathesis.GenerationMode.NEGATIVE:
        return not valid
    return valid and _one_target(case, form)


def _valid_on_the_wire(case, form: dict) -> bool:
    """A form's text parts are text: Schemathesis sends a null or a number as its JSON
    spelling ("null", "5"), which a string schema takes, so its negative phase's "title
    became null" arrives as the valid title "null". Its coverage phase, in turn, fills a
    required text part it does not generate with "" (beside parts made by the strategies
    above), whatever the part's schema says. The form as sent is checked against the body's
    schema (required parts, no others, each text part's own schema); a file part is bytes,
    which `format: binary` does not constrain."""
    body = case.operation.get_body_for_media_type(case.media_type)
    sent = {name: [_as_sent(v) for v in value] if isinstance(value, list) else _as_sent(value)
            for name, value in form.items()}
    return Draft202012Validator(body.resolved_schema or {}).is_valid(sent)


def _as_sent(value: object) -> str:
    if value is None or isinstance(value, (str, bool, int, float, dict, list)):
        return to_wire_text(value)  # the text Schemathesis' transport sends for the part
    return ""  # a file part (bytes): its content is the media type strategies' concern


def _one_target(case, form: dict) -> bool:
    """POST /optimize takes exactly one target, `?style=` or a `painting` part: a rule across
    the query and the body, which no OpenAPI schema can state (the server's 422 says so)."""
    if case.operation.label != "POST /optimize":
        return True
    styled = (case.query or {}).get("style") is not None
    return styled != ("painting" in form)
