"""Style spec parsing, shared by the API and the CLI."""

from __future__ import annotations

import numpy as np
import pytest

from service.errors import StyleSpecError, UnknownStyleError
from service.styles import parse_style_spec

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
])
def test_valid_specs(spec, vector, canonical):
    mix = parse_style_spec(spec, NAMES)
    v = mix.vector(NAMES)
    assert v.dtype == np.float32 and v.shape == (3,)
    np.testing.assert_allclose(v, vector, rtol=1e-6)
    assert abs(float(v.sum()) - 1) < 1e-6
    assert mix.spec == canonical


@pytest.mark.parametrize("spec", [None, "", "candy:-0.5", "candy:nan", "candy:NaN",
                                  "candy:inf", "candy:-inf", "candy:1e400", "candy:x",
                                  "candy:0", "candy,candy", "candy,", "candy:", ":1",
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
