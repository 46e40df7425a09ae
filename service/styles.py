"""Style specs: `candy` or `candy:0.7,mosaic:0.3`, shared by the API and the CLI.

A name without a weight counts 1; weights are normalised to sum to 1, so `candy:2,mosaic:2`
and `candy,mosaic` are the same blend. `STYLE_SPEC_PATTERN` is the grammar, also published
in the OpenAPI schema. Unknown names raise `UnknownStyleError` (404 in the
API); anything malformed raises `StyleSpecError` (422).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

import numpy as np

from stylebox.service.http.errors import StyleSpecError, UnknownStyleError

MAX_SPEC_CHARS = 2000
# The grammar, published as the `style` parameter's `pattern` in OpenAPI so that generated
# clients and fuzzers know exactly what is accepted: comma-separated `name` or `name:weight`,
# spaces allowed around each part. Weights are plain non-negative decimals (no nan/inf/_)
# with an optional short exponent; at least one item must weigh more than zero (a bare name
# weighs 1). ASCII classes, not \d: Python's \d also matches other scripts' digits.
_NAME = "[A-Za-z0-9_-]+"
_W = r"\+?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,3})?"
_POSITIVE = r"\+?(?:0*[1-9][0-9]*(?:\.[0-9]*)?|0*\.0*[1-9][0-9]*)(?:[eE][+-]?[0-9]{1,3})?"
_ITEM = f" *{_NAME} *(?:: *{_W} *)?"
_GOOD = f" *{_NAME} *(?:: *{_POSITIVE} *)?"
STYLE_SPEC_PATTERN = f"^(?:{_ITEM},)*{_GOOD}(?:,{_ITEM})*$"
_NAME_RE, _NUMBER_RE = re.compile(_NAME), re.compile(_W)


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


def _weight(name: str, text: str, valid: list[str]) -> Decimal:
    text = text.strip(" ")
    if not text:
        raise StyleSpecError(f"style {name!r} has an empty weight", valid)
    if text.startswith("-") and _NUMBER_RE.fullmatch(text[1:]):
        raise StyleSpecError(f"weight {text} for {name!r} is negative", valid)
    if not _NUMBER_RE.fullmatch(text):
        raise StyleSpecError(f"weight {text[:40]!r} for {name!r} is not a number (want a "
                             "plain decimal such as 0.3, 2 or 1e-2)", valid)
    return Decimal(text)  # exact: 1e-300 stays > 0, 1e300 does not overflow


def parse_style_spec(spec: str | None, style_names: Sequence[str]) -> StyleMix:
    """Exactly the strings `STYLE_SPEC_PATTERN` matches parse (tests/service/test_styles.py
    checks both ways); unknown names then raise UnknownStyleError. A name given twice adds
    up (`candy,candy` is `candy`), as a sum of weights should."""
    valid = list(style_names)
    if spec is None or not spec.strip(" "):
        raise StyleSpecError("no style given", valid)
    if len(spec) > MAX_SPEC_CHARS:
        raise StyleSpecError(f"style spec is longer than {MAX_SPEC_CHARS} characters", valid)
    weights: dict[str, Decimal] = {}
    for item in spec.split(","):
        name, sep, weight_text = item.partition(":")
        name = name.strip(" ").lower()
        if not name:
            raise StyleSpecError(f"empty style name in {spec[:80]!r}", valid)
        if not _NAME_RE.fullmatch(name):
            raise StyleSpecError(f"style name {name[:64]!r} may hold only letters, digits, "
                                 "'_' and '-'", valid)
        weight = _weight(name, weight_text, valid) if sep else Decimal(1)
        weights[name] = weights.get(name, Decimal(0)) + weight
    total = sum(weights.values())
    if total <= 0:  # part of the grammar, so before the names are looked up
        raise StyleSpecError("style weights are all zero", valid)
    unknown = [n[:64] for n in weights if n not in valid]
    if unknown:
        raise UnknownStyleError(unknown, valid)
    return StyleMix(tuple((n, float(w / total)) for n, w in weights.items()))
