"""The model card: the one place a model's style list lives.

It travels training config -> checkpoint -> ONNX ``metadata_props`` (one JSON value under
``CARD_KEY``) -> service. Pure Python on purpose: the service reads it without torch.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
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

