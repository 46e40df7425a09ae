"""Every way a request can be wrong: a 4xx problem+json (RFC 9457) and never a 5xx."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from stylebox.soak import header_bomb  # a PNG header claiming w x h: a bomb probe
from tests.conftest import TINY_STYLES, encode, make_app, make_client, noise, png

VALID = [s["name"] for s in TINY_STYLES]
PNG = png(seed=0)  # 16 x 16 noise: incompressible, so the cuts below land inside its IDAT
JPEG = encode(noise(64, 64), "JPEG", quality=95)


@pytest.fixture(scope="module")
def client(tiny_onnx, engine):
    with make_client(engine, tiny_onnx, max_upload_bytes=200_000, max_pixels=250_000) as c:
        yield c


def assert_problem(r, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.status_code < 500
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["status"] == status
    assert {"type", "title", "status", "detail"} <= body.keys()
    assert "Traceback" not in r.text
    return body


def stylize(client, style: str | None = "candy", data: bytes | None = None, **params):
    if style is not None:
        params["style"] = style
    return client.post("/stylize", params=params,
                       files={"image": ("x.png", PNG if data is None else data)})


@pytest.mark.parametrize("spec", ["vangogh", "candy:0.5,picasso:0.5", "CANDYX"])
def test_unknown_style_is_404_listing_valid_names(client, spec):
    body = assert_problem(stylize(client, spec), 404)
    assert body["valid_styles"] == VALID
    assert body["type"].endswith("unknown-style")
    for name in VALID:
        assert name in body["detail"]


@pytest.mark.parametrize("spec,words", [
    ("candy:-1", "negative"), ("candy:nan", "not a number"), ("candy:inf", "not a number"),
    ("candy:1e9999", "not a number"), ("candy:abc", "not a number"), ("candy:0", "all zero"),
    ("candy:0,mosaic:0", "all zero"), ("", "no style"), ("  ", "no style"),
    ("candy:0,candy:0", "all zero"), ("candy\n", "may hold only"), ("candy:", "empty weight"),
    ("candy,", "empty style"),
    (",", "empty style"), (":0.5", "empty style"), ("candy:1:2", "not a number"),
    ("candy:0x10", "not a number"), ("candy:1_0", "not a number"),
])
def test_bad_style_specs_are_422(client, spec, words):
    body = assert_problem(stylize(client, spec), 422)
    assert words in body["detail"]
    assert body["valid_styles"] == VALID


def test_missing_style_is_422_listing_valid_styles(client):
    body = assert_problem(stylize(client, None), 422)
    assert body["valid_styles"] == VALID and "no style" in body["detail"]


@pytest.mark.parametrize("params", [{"quality": 0}, {"quality": 101}, {"quality": "hi"},
                                    {"format": "gif"}])
def test_bad_query_params_are_422(client, params):
    body = assert_problem(stylize(client, **params), 422)
    assert body["errors"] and body["errors"][0]["loc"][0] == "query"


@pytest.mark.parametrize("data,status", [
    (b"hello, this is not an image at all", 415),
    (b"%PDF-1.4\n" + b"0" * 100, 415),
    (b"\x89PNG\r\n\x1a\n", 422),  # signature only
    (PNG[:60], 422),  # truncated inside IDAT
    (PNG[: len(PNG) // 2], 422),
    (JPEG[: len(JPEG) // 2], 422),
    (JPEG[:200], 422),
    (b"\xff\xd8\xff\xe0" + b"\0" * 50, 422),  # JPEG magic, junk after
])
def test_non_and_broken_images(client, data, status):
    assert_problem(stylize(client, data=data), status)


def test_corrupt_png_crc_is_4xx(client):
    data = bytearray(png(32, 32, seed=0))
    data[60] ^= 0xFF  # flip bits inside the IDAT payload
    r = stylize(client, data=bytes(data))
    assert 400 <= r.status_code < 500 and r.headers["content-type"] == "application/problem+json"


def test_zero_byte_uploads_are_422(client):
    assert_problem(stylize(client, data=b""), 422)
    r = client.post("/stylize?style=candy", content=b"", headers={"Content-Type": "image/png"})
    assert_problem(r, 422)
    assert_problem(client.post("/stylize?style=candy"), 422)


def test_missing_file_field_is_422(client):
    r = client.post("/stylize?style=candy", files={"file": ("x.png", PNG)})
    body = assert_problem(r, 422)
    assert "'image'" in body["detail"] and "'file'" in body["detail"]
    r = client.post("/stylize?style=candy", data={"image": "not a file"},
                    files={"other": ("x.png", b"x")})
    assert_problem(r, 422)


def test_wrong_content_types(client):
    r = client.post("/stylize?style=candy", content=PNG, headers={"Content-Type": "text/plain"})
    assert_problem(r, 415)
    r = client.post("/stylize?style=candy", content=b"--x\r\nbroken",
                    headers={"Content-Type": "multipart/form-data"})  # no boundary
    assert_problem(r, 400)
    r = client.post("/stylize?style=candy", content=b"garbage",
                    headers={"Content-Type": "multipart/form-data; boundary=abc"})
    assert r.status_code in (400, 422) and r.headers["content-type"] == "application/problem+json"


def test_oversized_body_is_413(client):
    big = b"\0" * 200_001
    body = assert_problem(client.post("/stylize?style=candy", content=big,
                                      headers={"Content-Type": "image/png"}), 413)
    assert body["max_upload_bytes"] == 200_000
    assert_problem(stylize(client, data=big), 413)

    def chunks():  # no Content-Length: caught while reading
        for _ in range(30):
            yield b"\0" * 10_000

    assert_problem(client.post("/stylize?style=candy", content=chunks(),
                               headers={"Content-Type": "image/png"}), 413)
    assert_problem(client.post("/stylize?style=candy", content=chunks(),
                               headers={"Content-Type": "multipart/form-data; boundary=b"}), 413)


def test_too_many_pixels_is_413_with_limits(client):
    flat = encode(Image.new("RGB", (500, 600), (9, 99, 199)))  # small file, 300k pixels
    body = assert_problem(stylize(client, data=flat), 413)
    assert body["max_pixels"] == 250_000 and body["width"] == 500 and body["height"] == 600
    # A header claiming 100k x 100k is refused before any decoding (Pillow's bomb guard).
    body = assert_problem(stylize(client, data=header_bomb(100_000, 100_000)), 413)
    assert body["max_pixels"] == 250_000


def test_unknown_route_and_method(client):
    body = assert_problem(client.get("/nope"), 404)
    assert body["type"] == "about:blank" and body["title"] == "Not Found"
    body = assert_problem(client.get("/stylize"), 405)
    assert "POST" in client.get("/stylize").headers["allow"]


def test_webp_too_wide_is_422_not_500(engine):
    data = png(1, 16_500, seed=0)
    with make_client(engine, "unused") as c:
        assert_problem(stylize(c, data=data, format="webp"), 422)


def test_unexpected_errors_are_a_bare_500(tiny_onnx, engine, monkeypatch, caplog):
    def boom(*args, **kwargs):
        raise RuntimeError("secret /opt/internal/path")

    app = make_app(engine, tiny_onnx)
    monkeypatch.setattr(engine, "stylize", boom)
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.post("/stylize?style=candy", files={"image": ("x.png", PNG)})
    assert r.status_code == 500 and r.headers["content-type"] == "application/problem+json"
    assert "secret" not in r.text and "/opt" not in r.text and "Traceback" not in r.text
    assert "secret /opt/internal/path" in caplog.text  # logged server-side, with the trace


def test_requests_are_logged_one_line_each(client, caplog):
    caplog.set_level("INFO", logger="stylebox.access")
    stylize(client, "candy:1,mosaic:1")
    stylize(client, "nope")
    lines = [r.getMessage() for r in caplog.records if r.name == "stylebox.access"]
    assert len(lines) == 2
    assert lines[0].startswith("POST /stylize 200 ") and "style=candy:0.5,mosaic:0.5" in lines[0]
    assert lines[1].startswith("POST /stylize 404 ") and "style='nope'" in lines[1]
