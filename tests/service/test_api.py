"""The REST API's happy paths, through FastAPI's TestClient and the tiny test model."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from stylebox.service.routers.stylize import choose_format
from stylebox.service.state import state_of
from tests.conftest import TINY_STYLES, encode, make_client, noise


def decode(resp) -> Image.Image:
    im = Image.open(io.BytesIO(resp.content))
    im.load()
    return im


@pytest.fixture(scope="module")
def engine(host_engine):
    """Every engine this host runs: the API (conftest's `client`, on this engine) must serve
    what its engine makes, on each."""
    return host_engine


def post(client, data: bytes, style: str | None = "candy", files: bool = True, **params):
    if style is not None:
        params["style"] = style
    if files:
        return client.post("/stylize", params=params, files={"image": ("x.png", data)})
    return client.post("/stylize", params=params, content=data,
                       headers={"Content-Type": "image/png"})


def test_styles_come_from_the_card(client, engine):
    r = client.get("/styles")
    assert r.status_code == 200
    assert r.json() == {"styles": [
        {"name": s.name, "title": s.title, "source": s.source, "index": i}
        for i, s in enumerate(engine.card.styles)]}
    assert [s["name"] for s in r.json()["styles"]] == [s["name"] for s in TINY_STYLES]


def test_model_is_the_card_and_the_runtime(client, engine):
    r = client.get("/model")
    assert r.status_code == 200
    body = r.json()
    runtime = body.pop("runtime")
    assert runtime == engine.runtime and runtime["precision"] == engine.precision
    if engine.backend == "onnxruntime":
        assert runtime == {"engine": "onnxruntime", "precision": "f32",
                           "providers": ["CPUExecutionProvider"], "precision_check": None}
    assert body == engine.card.to_dict()


def test_health_and_ready(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json()["status"] == "ready"


def test_readyz_is_503_until_the_engine_is_loaded(tiny_onnx):
    # No `with`: the lifespan never runs, so the model is never loaded.
    c = make_client(None, tiny_onnx)
    assert c.get("/healthz").status_code == 200
    r = c.get("/readyz")
    assert r.status_code == 503 and r.headers["content-type"] == "application/problem+json"
    assert c.post("/stylize?style=candy", content=encode(noise(8, 8))).status_code == 503


def test_concurrency_is_bounded_by_settings(tiny_onnx, engine):
    with make_client(engine, tiny_onnx, max_concurrency=3) as c:
        assert state_of(c.app).limiter.total_tokens == 3


def test_openapi_docs_are_served(client):
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert "/stylize" in spec["paths"] and "/styles" in spec["paths"]


@pytest.mark.parametrize("files", [True, False], ids=["multipart", "raw"])
def test_stylize_returns_png_of_the_same_size(client, engine, files):
    rgb = noise(37, 53)
    r = post(client, encode(rgb), files=files)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    assert r.headers["x-stylebox-style"] == "candy"
    assert float(r.headers["x-stylebox-inference-ms"]) >= 0
    assert r.headers["x-stylebox-inference-size"] == "53x37"
    out = decode(r)
    assert out.format == "PNG" and out.size == (53, 37) and out.mode == "RGB"
    candy = np.eye(3, dtype=np.float32)[0]
    np.testing.assert_array_equal(np.asarray(out), engine.stylize(rgb, candy))


def test_octet_stream_body_is_accepted(client):
    r = client.post("/stylize?style=udnie", content=encode(noise(20, 20)),
                    headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 200 and decode(r).size == (20, 20)


def test_blend_matches_engine_and_differs_from_pure_styles(client, engine):
    rgb = noise(40, 48, seed=1)
    data = encode(rgb)
    r = post(client, data, "candy:0.7,mosaic:0.3")
    assert r.status_code == 200
    assert r.headers["x-stylebox-style"] == "candy:0.7,mosaic:0.3"
    blend = np.asarray(decode(r))
    expect = engine.stylize(rgb, np.array([0.7, 0.3, 0.0], dtype=np.float32))
    np.testing.assert_array_equal(blend, expect)
    for pure in ("candy", "mosaic"):
        assert not np.array_equal(blend, np.asarray(decode(post(client, data, pure))))


def test_styles_differ(client):
    data = encode(noise(32, 32, seed=2))
    outs = [np.asarray(decode(post(client, data, s["name"]))) for s in TINY_STYLES]
    for i in range(len(outs)):
        for j in range(i + 1, len(outs)):
            assert np.abs(outs[i].astype(int) - outs[j].astype(int)).mean() > 1


def test_weights_are_normalised(client):
    data = encode(noise(24, 24, seed=3))
    a = post(client, data, "candy:2,mosaic:2")
    b = post(client, data, "candy:1,mosaic:1")
    c = post(client, data, "candy,mosaic")
    assert a.headers["x-stylebox-style"] == b.headers["x-stylebox-style"] == "candy:0.5,mosaic:0.5"
    assert a.content == b.content == c.content
    # A zero weight drops out of the canonical spec and the blend.
    z = post(client, data, "candy:1,mosaic:0")
    assert z.headers["x-stylebox-style"] == "candy"
    assert z.content == post(client, data, "candy").content


@pytest.mark.parametrize("fmt,media,pil", [("jpeg", "image/jpeg", "JPEG"),
                                           ("jpg", "image/jpeg", "JPEG"),
                                           ("webp", "image/webp", "WEBP"),
                                           ("png", "image/png", "PNG")])
def test_format_param(client, fmt, media, pil):
    r = post(client, encode(noise(30, 44)), format=fmt)
    assert r.status_code == 200 and r.headers["content-type"] == media
    out = decode(r)
    assert out.format == pil and out.size == (44, 30)


@pytest.mark.parametrize("accept,media", [
    ("image/jpeg", "image/jpeg"),
    ("image/webp", "image/webp"),
    ("image/png;q=0.5, image/webp;q=0.9", "image/webp"),
    ("image/avif,image/webp,*/*;q=0.8", "image/webp"),
    ("*/*", "image/png"),
    ("application/json", "image/png"),
])
def test_format_by_accept(client, accept, media):
    r = client.post("/stylize?style=candy", content=encode(noise(16, 16)),
                    headers={"Content-Type": "image/png", "Accept": accept})
    assert r.status_code == 200 and r.headers["content-type"] == media
    assert "Accept" in r.headers["vary"]


def test_format_param_beats_accept(client):
    r = post(client, encode(noise(16, 16)), format="png")
    r2 = client.post("/stylize?style=candy&format=png", content=encode(noise(16, 16)),
                     headers={"Content-Type": "image/png", "Accept": "image/jpeg"})
    assert r.headers["content-type"] == r2.headers["content-type"] == "image/png"


def test_choose_format_unit():
    assert choose_format(None, None, "webp") == "webp"
    assert choose_format("jpg", "image/png", "png") == "jpeg"
    assert choose_format(None, "image/jpeg;q=0, image/webp;q=0.1", "png") == "webp"
    assert choose_format(None, "image/jpeg;q=abc", "png") == "png"
    assert choose_format(None, "image/*;q=1, image/jpeg;q=1", "png") == "jpeg"


def test_jpeg_quality_changes_size(client):
    data = encode(noise(64, 64, seed=4))
    lo = post(client, data, format="jpeg", quality=10)
    hi = post(client, data, format="jpeg", quality=95)
    assert lo.status_code == hi.status_code == 200
    assert len(lo.content) < len(hi.content)


def test_exif_rotation_is_applied(client):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": a 40x20 file shows as 20x40
    data = encode(Image.fromarray(noise(20, 40)), "JPEG", exif=exif.tobytes())
    r = post(client, data)
    assert r.status_code == 200 and decode(r).size == (20, 40)


def test_greyscale_and_16bit_and_cmyk(client):
    grey = Image.fromarray(noise(21, 13)[:, :, 0])
    g16 = Image.fromarray(np.arange(12 * 9, dtype=np.uint16).reshape(12, 9) * 600)
    assert g16.mode == "I;16"
    cmyk = Image.new("CMYK", (19, 11), (10, 200, 30, 40))
    for im, fmt, size in ((grey, "PNG", (13, 21)), (g16, "PNG", (9, 12)),
                          (cmyk, "JPEG", (19, 11))):
        r = post(client, encode(im, fmt))
        assert r.status_code == 200, (im.mode, r.text)
        out = decode(r)
        assert out.size == size and out.mode == "RGB"


def test_palette_with_transparency_keeps_alpha(client):
    p = Image.fromarray(noise(10, 12)[:, :, 0] % 4).convert("P")
    p.info["transparency"] = 0
    r = post(client, encode(p, "PNG", transparency=0))
    out = decode(r)
    assert out.mode == "RGBA" and out.size == (12, 10)
    expected = np.where(np.asarray(p) == 0, 0, 255)
    np.testing.assert_array_equal(np.asarray(out)[:, :, 3], expected)


def test_rgba_alpha_is_preserved_exactly(client, engine):
    rgba = noise(17, 23, seed=5, channels=4)
    r = post(client, encode(rgba))
    out = np.asarray(decode(r))
    assert out.shape == (17, 23, 4)
    np.testing.assert_array_equal(out[:, :, 3], rgba[:, :, 3])
    np.testing.assert_array_equal(out[:, :, :3], engine.stylize(
        np.ascontiguousarray(rgba[:, :, :3]), np.eye(3, dtype=np.float32)[0]))
    webp = post(client, encode(rgba), format="webp")
    assert decode(webp).mode == "RGBA"  # WebP keeps alpha, JPEG drops it
    assert decode(post(client, encode(rgba), format="jpeg")).mode == "RGB"


def test_la_image_keeps_alpha(client):
    la = Image.fromarray(noise(9, 7, seed=6, channels=2), "LA")
    out = decode(post(client, encode(la)))
    assert out.mode == "RGBA" and out.size == (7, 9)
    np.testing.assert_array_equal(np.asarray(out)[:, :, 3], np.asarray(la)[:, :, 1])


def test_animated_gif_uses_first_frame(client):
    frames = [Image.fromarray(noise(14, 18, seed=s)).convert("P") for s in range(3)]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)
    r = post(client, data)
    assert r.status_code == 200 and decode(r).size == (18, 14)


@pytest.mark.parametrize("h,w", [(1, 1), (1, 300), (300, 1), (3, 5), (7, 8)])
def test_tiny_images(client, h, w):
    r = post(client, encode(noise(h, w)))
    assert r.status_code == 200, r.text
    assert decode(r).size == (w, h)


def test_image_over_inference_budget_keeps_its_size(tiny_onnx, engine):
    # The downscale path; tiling (the default for this model) is in tests/service/test_tiling.py.
    with make_client(engine, tiny_onnx, max_inference_pixels=1000,
                     large_images="downscale") as c:
        r = post(c, encode(noise(60, 100)))
    assert r.status_code == 200
    assert decode(r).size == (100, 60)
    iw, ih = map(int, r.headers["x-stylebox-inference-size"].split("x"))
    assert iw * ih <= 1000 and (iw, ih) != (100, 60)
    assert abs(iw / ih - 100 / 60) < 0.1


def test_the_test_client_runs_on_httpx2():
    """Starlette's TestClient on plain httpx is deprecated: it warns at every import."""
    import starlette.testclient

    assert starlette.testclient.httpx.__name__ == "httpx2"
