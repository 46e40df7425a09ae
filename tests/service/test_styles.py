"""Style spec parsing, shared by the API and the CLI."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stylebox.service.http.errors import StyleSpecError, UnknownStyleError
from stylebox.service.styles import STYLE_SPEC_PATTERN, parse_style_spec

NAMES = ["candy", "mosaic", "udnie"]


@pytest.mark.parametrize("spec,vector,canonical", [
    ("candy", [1, 0, 0], "candy"),
    (" Mosaic ", [0, 1, 0], "mosaic"),
    ("candy:0.7,mosaic:0.3", [0.7, 0.3, 0], "candy:0.7,mosaic:0.3"),
    ("candy:2,mosaic:2", [0.5, 0.5, 0], "candy:0.5,mosaic:0.5"),
    ("candy,mosaic,udnie:2", [0.25, 0.25, 0.5], "candy:0.25,mosaic:0.25,udnie:0.5"),
    ("udnie:.5, candy:1e-1", [1 / 6, 0, 5 / 6], "udnie:0.833333,candy:0.166667"),
    ("candy:0,udnie:3", [0, 0, 1], "udnie"),
    ("candy:+1", [1, 0, 0], "candy"),
    ("candy,candy", [1, 0, 0], "candy"),  # weights add up
    ("candy:1,udnie:1,candy:2", [0.75, 0, 0.25], "candy:0.75,udnie:0.25"),
    ("candy:1e-300,mosaic:1e300", [0, 1, 0], "mosaic"),  # exact: no overflow, no 0/0
    ("candy:1e-300", [1, 0, 0], "candy"),
])
def test_valid_specs(spec, vector, canonical):
    mix = parse_style_spec(spec, NAMES)
    v = mix.vector(NAMES)
    assert v.dtype == np.float32 and v.shape == (3,)
    np.testing.assert_allclose(v, vector, rtol=1e-6)
    assert abs(float(v.sum()) - 1) < 1e-6
    assert mix.spec == canonical


@pytest.mark.parametrize("spec", [None, "", "candy:-0.5", "candy:nan", "candy:NaN",
                                  "candy:inf", "candy:-inf", "candy:1e4000", "candy:x",
                                  "candy:0", "candy:0,mosaic:0.0", "candy,", "candy:", ":1",
                                  "candy\n", "candy\t", "cand\u00fd", "candy:\u0661",
                                  "x" * 3000])
def test_invalid_specs(spec):
    with pytest.raises(StyleSpecError) as e:
        parse_style_spec(spec, NAMES)
    assert e.value.status == 422 and e.value.extensions["valid_styles"] == NAMES


def test_unknown_names():
    with pytest.raises(UnknownStyleError) as e:
        parse_style_spec("candy:1,starry:1,scream", NAMES)
    assert e.value.status == 404
    assert e.value.extensions == {"unknown_styles": ["starry", "scream"], "valid_styles": NAMES}
    assert "candy, mosaic, udnie" in e.value.detail


def _parses(spec: str) -> bool:
    try:
        parse_style_spec(spec, NAMES)
    except UnknownStyleError:
        return True  # well-formed; the 404 lists the valid names
    except StyleSpecError:
        return False
    return True


GRAMMAR = re.compile(STYLE_SPEC_PATTERN)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.from_regex(GRAMMAR, fullmatch=True).filter(lambda s: len(s) <= 2000))
def test_every_string_the_published_pattern_matches_parses(spec):
    """OpenAPI publishes STYLE_SPEC_PATTERN: a client that follows it is never refused 422."""
    assert _parses(spec), spec


_ALPHABET = st.sampled_from(list("candymosu:,. 0123456789-+eE_\t\nx\u00e9\u0661"))


@settings(max_examples=500, deadline=None, derandomize=True, database=None)
@given(st.one_of(st.text(_ALPHABET, max_size=24),
                 st.lists(st.sampled_from(["candy", "mosaic:0", "udnie:.5", " x ", "0",
                                           ":", ",", "1e5", "+2", "-1"]), max_size=5
                          ).map("".join)))
def test_the_parser_accepts_exactly_the_published_pattern(spec):
    """And the other way: what the pattern refuses, the server refuses (negative fuzzing)."""
    assert _parses(spec) == bool(GRAMMAR.fullmatch(spec)), spec
