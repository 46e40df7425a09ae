"""Creative controls (strength, preserve_color, max_side), style previews and the page's routes.

Pixel maths is checked directly; the API and the CLI through the tiny test model.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageOps

from stylebox.service import controls as ctl
from stylebox.service.backends.ort import OrtEngine
from stylebox.service.cli import stylize_main
from stylebox.service.controls import (
    ControlError,
    Controls,
    apply_controls,
    limit_side,
    oklab_to_srgb,
    srgb_to_oklab,
)
from stylebox.service.previews import PREVIEW_SIZE, sample_image
from tests.conftest import TINY_STYLES, encode, make_client, noise, pixels

PROBLEM = "application/problem+json"

# -- pixel maths ------------------------------------------------------------------------------

def test_oklab_round_trip_is_exact_and_anchored():
    grid = np.arange(0, 256, 3, dtype=np.uint8)  # 86^3 = 636k colours, 0 and 255 included
    rgb = np.stack(np.meshgrid(grid, grid, grid, indexing="ij"), -1).reshape(-1, 1, 3)
    np.testing.assert_array_equal(oklab_to_srgb(srgb_to_oklab(rgb)), rgb)
    white, black = srgb_to_oklab(np.array([[255, 255, 255], [0, 0, 0]], np.uint8))
    np.testing.assert_allclose(white, [1, 0, 0], atol=1e-3)
    np.testing.assert_allclose(black, [0, 0, 0], atol=1e-6)
    red = srgb_to_oklab(np.array([255, 0, 0], np.uint8))  # Ottosson's published value
    np.testing.assert_allclose(red, [0.628, 0.2249, 0.1258], atol=2e-3)


def test_strength_end_points_are_exact():
    photo, styled = noise(20, 30, seed=0), noise(20, 30, seed=1)
    assert apply_controls(photo, styled, Controls(1.0)) is styled
    np.testing.assert_array_equal(apply_controls(photo, styled, Controls(0.0)), photo)
    np.testing.assert_array_equal(apply_controls(photo, styled, Controls(0.0, True)), photo)


def test_strength_is_a_perceptual_blend():
    photo, styled = noise(32, 32, seed=2, lo=40, hi=216), noise(32, 32, seed=3, lo=40, hi=216)
    lp, ls = srgb_to_oklab(photo), srgb_to_oklab(styled)
    half = srgb_to_oklab(apply_controls(photo, styled, Controls(0.5)))
    # The midpoint in Oklab, up to 8-bit rounding (and clipping of a few out-of-gamut mixes).
    assert np.median(np.abs(half - (lp + ls) / 2)) < 0.003
    dists = [np.linalg.norm(srgb_to_oklab(apply_controls(photo, styled, Controls(s))) - lp,
                            axis=-1).mean() for s in (0.0, 0.25, 0.5, 0.75, 1.0)]
    assert dists == sorted(dists) and dists[0] == 0  # more strength: further from the photo
    steps = np.diff(dists)
    assert steps.max() < 1.3 * steps.min()  # and evenly so: perceptually linear


def test_preserve_color_keeps_photo_chroma_and_style_lightness():
    photo, styled = noise(24, 24, seed=4, lo=60, hi=200), noise(24, 24, seed=5, lo=60, hi=200)
    out = srgb_to_oklab(apply_controls(photo, styled, Controls(1.0, preserve_color=True)))
    lp, ls = srgb_to_oklab(photo), srgb_to_oklab(styled)
    assert np.percentile(np.abs(out[..., 0] - ls[..., 0]), 90) < 0.01
    assert np.percentile(np.abs(out[..., 1:] - lp[..., 1:]), 90) < 0.01
    # A grey photo stays grey, whatever colours the style brings.
    grey = np.repeat(noise(16, 16, seed=6)[..., :1], 3, axis=2)
    out = apply_controls(grey, noise(16, 16, seed=7), Controls(1.0, preserve_color=True))
    assert np.ptp(out.astype(int), axis=2).max() <= 1


def test_bands_give_the_same_result(monkeypatch):
    photo, styled = noise(37, 29, seed=8), noise(37, 29, seed=9)
    whole = apply_controls(photo, styled, Controls(0.3, True))
    monkeypatch.setattr(ctl, "_BAND_PIXELS", 100)  # 3 rows per band, last band partial
    np.testing.assert_array_equal(apply_controls(photo, styled, Controls(0.3, True)), whole)
    with pytest.raises(ValueError, match="differ in shape"):
        apply_controls(photo, styled[:-1], Controls(0.5))


@pytest.mark.parametrize("kwargs", [{"strength": -0.01}, {"strength": 1.5},
                                    {"strength": float("nan")}, {"max_side": 8},
                                    {"max_side": 100_000}])
def test_out_of_range_controls_are_422(kwargs):
    with pytest.raises(ControlError) as e:
        Controls(**kwargs)
    assert e.value.status == 422 and next(iter(kwargs)) in e.value.detail


def test_limit_side_keeps_aspect_and_alpha():
    rgb, alpha = noise(200, 300, seed=10), np.full((200, 300), 77, np.uint8)
    small, small_alpha = limit_side(rgb, alpha, 100)
    assert small.shape == (67, 100, 3) and small_alpha.shape == (67, 100)
    assert (small_alpha == 77).all()
    same, same_alpha = limit_side(rgb, alpha, 300)
    assert same is rgb and same_alpha is alpha


# -- API ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def engine(host_engine):
    """Every engine this host runs: controls and previews apply to whatever serves."""
    return host_engine


@pytest.fixture(scope="module")
def client(tiny_onnx, engine):
    with make_client(engine, tiny_onnx, max_upload_bytes=123_456) as c:
        yield c


def post(client, data: bytes, **params):
    return client.post("/stylize", params={"style": "mosaic", **params},
                       files={"image": ("x.png", data)})


def test_api_strength(client, engine):
    photo = noise(40, 56, seed=11)
    full = engine.stylize(photo, np.array([0, 1, 0], np.float32))
    r = post(client, encode(photo), strength=0)
    assert r.status_code == 200
    assert r.headers["x-stylebox-controls"] == "strength=0; preserve_color=0; max_side=none"
    np.testing.assert_array_equal(pixels(r.content), photo)
    np.testing.assert_array_equal(pixels(post(client, encode(photo)).content), full)
    half = pixels(post(client, encode(photo), strength=0.5).content)
    np.testing.assert_array_equal(half, apply_controls(photo, full, Controls(0.5)))


def test_api_preserve_color_and_max_side(client, engine):
    grey = np.repeat(noise(50, 100, seed=12)[..., :1], 3, axis=2)
    r = post(client, encode(grey), preserve_color="true")
    assert r.status_code == 200 and "preserve_color=1" in r.headers["x-stylebox-controls"]
    out = pixels(r.content).astype(int)
    assert np.ptp(out, axis=2).max() <= 1 and np.abs(out - grey).mean() > 3
    rgba = np.dstack([noise(50, 100, seed=13), np.full((50, 100), 200, np.uint8)])
    r = post(client, encode(rgba), max_side=40, format="png")
    out = pixels(r.content)
    assert r.status_code == 200 and out.shape == (20, 40, 4) and (out[..., 3] == 200).all()
    assert r.headers["x-stylebox-inference-size"] == "40x20"
    small = noise(10, 12, seed=14)  # already within max_side: untouched size
    assert pixels(post(client, encode(small), max_side=64).content).shape == (10, 12, 3)


@pytest.mark.parametrize("params, field", [
    ({"strength": "1.5"}, "strength"), ({"strength": "-1"}, "strength"),
    ({"strength": "nan"}, "strength"), ({"strength": "lots"}, "strength"),
    ({"max_side": "4"}, "max_side"), ({"max_side": "99999"}, "max_side"),
    ({"max_side": "big"}, "max_side"), ({"preserve_color": "maybe"}, "preserve_color"),
    ({"quality": "0", "format": "jpeg"}, "quality"), ({"format": "gif"}, "format"),
])
def test_api_bad_controls_are_422_problems(client, params, field):
    r = post(client, encode(noise(8, 8, seed=15)), **params)
    assert r.status_code == 422 and r.headers["content-type"] == PROBLEM
    body = r.json()
    assert body["status"] == 422 and field in body["detail"]
    assert any(e["loc"] == ["query", field] for e in body["errors"])


def test_previews_are_made_by_the_model(client, engine):
    shown = {}
    for i, style in enumerate(TINY_STYLES):
        r = client.get(f"/styles/{style['name']}/preview.png")
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        onehot = np.eye(len(TINY_STYLES), dtype=np.float32)[i]
        np.testing.assert_array_equal(pixels(r.content),
                                      engine.stylize(sample_image(), onehot))
        assert client.get(f"/styles/{style['name']}/preview.png").content == r.content
        shown[style["name"]] = pixels(r.content).astype(int)
    assert shown["candy"].shape == (PREVIEW_SIZE, PREVIEW_SIZE, 3)
    assert np.abs(shown["candy"] - shown["mosaic"]).mean() > 5
    r = client.get("/styles/starry/preview.png")
    assert r.status_code == 404 and r.headers["content-type"] == PROBLEM
    assert r.json()["valid_styles"] == [s["name"] for s in TINY_STYLES]
    sample = client.get("/sample.png")
    np.testing.assert_array_equal(pixels(sample.content), sample_image())


def test_page_and_static_files(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert 'data-max-upload-bytes="123456"' in r.text and "{{" not in r.text
    assert '<script src="/static/app.js"' in r.text and "http" not in r.text  # no CDN
    js = client.get("/static/app.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert "/stylize?" in js.text
    assert client.get("/static/style.css").headers["content-type"].startswith("text/css")
    for bad in ("/static/nope.js", "/static/..%2Fcontrols.py", "/static/index.html"):
        r = client.get(bad)
        assert r.status_code == 404 and r.headers["content-type"] == PROBLEM, bad


# -- CLI ------------------------------------------------------------------------------------

def test_cli_controls(tiny_onnx, tmp_path, capsys):
    photo = noise(30, 80, seed=16)
    src = tmp_path / "photo.png"
    src.write_bytes(encode(photo))
    base = [str(src), "-s", "candy", "--model", str(tiny_onnx), "-o"]
    assert stylize_main([*base, str(tmp_path / "a.png"), "--strength", "0"]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "a.png")), photo)
    assert stylize_main([*base, str(tmp_path / "b.png"), "--max-side", "40",
                         "--preserve-color", "--strength", "0.7"]) == 0
    assert Image.open(tmp_path / "b.png").size == (40, 15)
    for bad in (["--strength", "1.01"], ["--strength", "nan"], ["--max-side", "2"]):
        with pytest.raises(SystemExit) as e:
            stylize_main([*base, str(tmp_path / "c.png"), *bad])
        assert e.value.code == 2
        assert bad[0].lstrip("-").replace("-", "_") in capsys.readouterr().err
    assert not (tmp_path / "c.png").exists()


def test_previews_are_made_from_the_photo_in_the_card(tmp_path):
    """`stylebox export --sample-photo`: the page shows each style on that photo."""
    from stylebox.model.export import SAMPLE_SIZE, export_onnx
    from tests.conftest import make_tiny_card, make_tiny_generator

    photo = sample_image(200)[:, 30:190]  # (200, 160, 3): smooth, so JPEG keeps it close
    path = tmp_path / "photo.png"
    Image.fromarray(photo).save(path)
    model = tmp_path / "m.onnx"
    card = export_onnx(make_tiny_generator(), make_tiny_card(), model, export_size=32,
                       sample_photo=path)
    assert card.export["sample"]["file"] == "photo.png"
    engine = OrtEngine(model)
    with make_client(engine, model) as c:
        sample = pixels(c.get("/sample.png").content)
        assert sample.shape == (SAMPLE_SIZE, SAMPLE_SIZE, 3)
        fitted = np.asarray(ImageOps.fit(Image.fromarray(photo), (SAMPLE_SIZE,) * 2,
                                         Image.Resampling.LANCZOS))
        assert np.abs(sample.astype(int) - fitted).mean() < 3  # the photo, centre-cropped
        assert np.abs(sample.astype(int) - sample_image()).mean() > 10  # not the drawn scene
        r = c.get(f"/styles/{TINY_STYLES[1]['name']}/preview.png")
        assert r.status_code == 200
        np.testing.assert_array_equal(pixels(r.content),
                                      engine.stylize(sample, engine.one_hot(1)))


def test_a_damaged_sample_in_the_card_falls_back_to_the_drawn_scene(tiny_onnx):
    from stylebox.service.previews import PreviewCache

    engine = OrtEngine(tiny_onnx)
    engine.card.export["sample"] = {"jpeg_base64": "bm90IGEgSlBFRw=="}  # "not a JPEG"
    np.testing.assert_array_equal(PreviewCache().sample(engine), sample_image())
