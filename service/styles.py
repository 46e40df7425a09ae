"""Style specs: `candy` or `candy:0.7,mosaic:0.3`, shared by the API and the CLI.

A name without a weight counts 1; weights are normalised to sum to 1, so `candy:2,mosaic:2`
and `candy,mosaic` are the same blend. Unknown names raise `UnknownStyleError` (404 in the
API); anything malformed raises `StyleSpecError` (422).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from service.errors import StyleSpecError, UnknownStyleError

MAX_SPEC_CHARS = 2000
# Plain non-negative decimals only: float() alone would also take "nan", "inf", "1_0".
_NUMBER = re.compile(r"^\+?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


@dataclass(frozen=True)
class StyleMix:
    """A validated blend: (name, weight) pairs in spec order, weights summing to 1."""

    parts: tuple[tuple[str, float], ...]

    def vector(self, style_names: Sequence[str]) -> np.ndarray:
        """The model's `style_weights` row: float32 (N,)."""
        w = np.zeros(len(style_names), dtype=np.float32)
        for name, weight in self.parts:
            w[list(style_names).index(name)] = weight
        return w

    @property
    def spec(self) -> str:
        """Canonical text, e.g. `candy` or `candy:0.7,mosaic:0.3` (zero weights dropped)."""
        kept = [(n, w) for n, w in self.parts if w > 0]
        if len(kept) == 1:
            return kept[0][0]
        return ",".join(f"{n}:{w:.6g}" for n, w in kept)


def _weight(name: str, text: str, valid: list[str]) -> float:
    text = text.strip()
    if not text:
        raise StyleSpecError(f"style {name!r} has an empty weight", valid)
    if text.startswith("-") and _NUMBER.match(text[1:]):
        raise StyleSpecError(f"weight {text} for {name!r} is negative", valid)
    if not _NUMBER.match(text):
        raise StyleSpecError(f"weight {text[:40]!r} for {name!r} is not a number", valid)
    value = float(text)
    if not math.isfinite(value):  # e.g. 1e999
        raise StyleSpecError(f"weight {text[:40]} for {name!r} is not finite", valid)
    return value


def parse_style_spec(spec: str | None, style_names: Sequence[str]) -> StyleMix:
    valid = list(style_names)
    if spec is None or not spec.strip():
        raise StyleSpecError("no style given", valid)
    if len(spec) > MAX_SPEC_CHARS:
        raise StyleSpecError(f"style spec is longer than {MAX_SPEC_CHARS} characters", valid)
    parts: list[tuple[str, float]] = []
    for item in spec.split(","):
        name, sep, weight_text = item.partition(":")
        name = name.strip().lower()
        if not name:
            raise StyleSpecError(f"empty style name in {spec[:80]!r}", valid)
        weight = _weight(name, weight_text, valid) if sep else 1.0
        if any(name == n for n, _ in parts):
            raise StyleSpecError(f"style {name!r} is given more than once", valid)
        parts.append((name, weight))
    unknown = [n[:64] for n, _ in parts if n not in valid]
    if unknown:
        raise UnknownStyleError(unknown, valid)
    total = math.fsum(w for _, w in parts)
    if total <= 0:
        raise StyleSpecError("style weights are all zero", valid)
    return StyleMix(tuple((n, w / total) for n, w in parts))
