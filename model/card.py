"""The model card: the one place a model's style list lives.

It travels training config -> checkpoint -> ONNX ``metadata_props`` (one JSON value under
``CARD_KEY``) -> service. Pure Python on purpose: the service reads it without torch.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from stylebox.errors import UserError

CARD_KEY = "stylebox.card"
CARD_SCHEMA = 1
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_\-]{0,63}$")


class CardError(UserError):
    """A model card that is missing, malformed or inconsistent."""


@dataclass(frozen=True)
class StyleInfo:
    name: str  # URL-safe id used in ?style=
    title: str = ""  # human title, e.g. "Starry Night (van Gogh)"
    source: str = ""  # where the style image came from / what it shows

    def __post_init__(self) -> None:
        if not _NAME_RE.match(self.name):
            raise CardError(
                f"style name {self.name!r} must be lowercase letters, digits, '_' or '-' "
                "(at most 64 characters)"
            )
        if not self.title:
            object.__setattr__(self, "title", self.name.replace("_", " ").title())


@dataclass
class ModelCard:
    name: str
    version: str
    alpha: float
    styles: list[StyleInfo]
    # Architecture knobs beyond alpha (base channels, residual blocks); see model.network.
    arch: dict[str, Any] = field(default_factory=dict)
    # Training settings: steps, image_size, style_size, loss weights and layers, seed, ...
    training: dict[str, Any] = field(default_factory=dict)
    # Export settings: exporter, opset, input/output spec, parity error, ...
    export: dict[str, Any] = field(default_factory=dict)
    schema: int = CARD_SCHEMA

    def __post_init__(self) -> None:
        self.styles = [s if isinstance(s, StyleInfo) else StyleInfo(**s) for s in self.styles]
        if not self.styles:
            raise CardError("a model card needs at least one style")
        names = [s.name for s in self.styles]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise CardError(f"duplicate style names: {', '.join(dupes)}")
        if not 0 < float(self.alpha) <= 4:
            raise CardError(f"alpha must be in (0, 4], got {self.alpha}")
        self.alpha = float(self.alpha)

    @property
    def style_names(self) -> list[str]:
        return [s.name for s in self.styles]

    @property
    def n_styles(self) -> int:
        return len(self.styles)

    def index(self, name: str) -> int:
        try:
            return self.style_names.index(name)
        except ValueError:
            raise KeyError(name) from None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelCard:
        if not isinstance(d, dict):
            raise CardError("model card must be a JSON object")
        known = {f for f in cls.__dataclass_fields__}
        missing = {"name", "version", "alpha", "styles"} - d.keys()
        if missing:
            raise CardError(f"model card lacks {', '.join(sorted(missing))}")
        try:
            return cls(**{k: v for k, v in d.items() if k in known})
        except TypeError as e:
            raise CardError(f"malformed model card: {e}") from None

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as e:
            raise CardError(f"model card is not valid JSON: {e}") from None


class NotOnnxError(CardError):
    """The file is not an ONNX model at all (a checkpoint, an image, a truncated file)."""


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if i >= len(buf) or shift > 63:
            raise NotOnnxError("truncated: it ends inside a field")
        b = buf[i]
        value |= (b & 0x7F) << shift
        i, shift = i + 1, shift + 7
        if b < 0x80:
            return value, i


def _fields(buf: bytes) -> list[tuple[int, int, bytes | int]]:
    """(field number, wire type, bytes or int) of one protobuf message, without descending."""
    out, i = [], 0
    while i < len(buf):
        tag, i = _varint(buf, i)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire in (1, 5):  # fixed 64 / 32 bits
            value, i = buf[i:i + (8 if wire == 1 else 4)], i + (8 if wire == 1 else 4)
        elif wire == 2:
            n, i = _varint(buf, i)
            value, i = buf[i:i + n], i + n
        else:
            raise NotOnnxError(f"not protobuf: wire type {wire} at byte {i}")
        if number == 0 or i > len(buf):
            raise NotOnnxError("truncated, or not protobuf")
        out.append((number, wire, value))
    return out


def read_onnx_metadata(path: str | Path) -> dict[str, str]:
    """An ONNX file's `metadata_props`, read by walking its top-level protobuf fields.

    Runtime-independent and cheap (the graph is skipped, not parsed), so a file that is not
    an ONNX model at all is refused with one line before any runtime parses it (and prints
    its own errors).
    """
    data = Path(path).read_bytes()
    if data[:4] == b"PK\x03\x04":  # torch.save's zip format
        raise NotOnnxError("this is a zip file (a PyTorch checkpoint?), not an ONNX model; "
                           "make one with `stylebox export CHECKPOINT -o MODEL.onnx`")
    fields = _fields(data)
    # ModelProto: 1 = ir_version (varint), 7 = graph, 14 = metadata_props (key 1, value 2).
    if not any(n == 1 and w == 0 for n, w, _ in fields) or \
            not any(n == 7 and w == 2 for n, w, _ in fields):
        raise NotOnnxError("no ONNX graph in it")
    meta = {}
    for number, wire, value in fields:
        if number == 14 and wire == 2:
            entry = {n: v for n, w, v in _fields(value) if w == 2}
            try:
                meta[entry.get(1, b"").decode()] = entry.get(2, b"").decode()
            except UnicodeDecodeError:
                raise NotOnnxError("metadata that is not UTF-8") from None
    return meta
