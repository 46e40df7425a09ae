"""What one request may cost: thin strips are priced by the work tiling really does (padding
and per-run overhead), and a PNG whose data ends early is caught whatever its shape."""

from __future__ import annotations

import struct
import time
import zlib

import pytest
from fastapi.testclient import TestClient

from stylebox.service.app import create_app
from stylebox.service.backends.ort import OrtEngine
from stylebox.service.cli import stylize_main
from stylebox.service.http.errors import ImageTooLargeError
from stylebox.service.imaging import fit_size
from stylebox.service.pipeline import check_cost, cost_limit, plan
from stylebox.service.settings import Settings
from stylebox.service.tiling import TileConfig
from tests.conftest import ROOT

SHIPPED = ROOT / "models" / "stylebox-a0.25.onnx"


def _chunk(kind: bytes, body: bytes) -> bytes:
    return (struct.pack(">I", len(body)) + kind + body
            + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))


def strip_png(width: int, height: int, rows: int | None = None) -> bytes:
    """An RGB PNG of width x height whose zlib stream holds `rows` black rows (all by
    default): a complete stream that ends early when rows < height."""
    raw = (b"\0" * (1 + 3 * width)) * (height if rows is None else rows)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height,
                                                               8, 2, 0, 0, 0))
            + _chunk(b"IDAT", zlib.compress(raw, 9)) + _chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(Settings(model_path=str(SHIPPED)),
                               engine=OrtEngine(SHIPPED))) as c:
        yield c


def _post(client, data: bytes):
    t0 = time.perf_counter()
    r = client.post("/stylize?style=candy", content=data, headers={"Content-Type": "image/png"})
    return r, time.perf_counter() - t0


@pytest.mark.parametrize("w,h", [(1, 5_000_000), (3, 2_000_000), (5_000_000, 1),
                                 (2, 5_000_000), (1, 1_000_000)])
def test_a_png_whose_data_ends_early_is_refused_at_once(client, w, h):
    data = strip_png(w, h, rows=25 if w < 10 else 0)  # a complete stream, rows missing
    assert len(data) < 120
    r, seconds = _post(client, data)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert "truncated" in r.json()["detail"] and seconds < 5


@pytest.mark.parametrize("w,h", [(1, 5_000_000), (5_000_000, 1), (2, 8_000_000)])
def test_a_thin_strip_costing_more_than_the_largest_image_is_413_before_any_run(client, w, h):
    data = strip_png(w, h)  # complete and valid: black, a few tens of kB
    r, seconds = _post(client, data)
    assert r.status_code == 413, r.text
    body = r.json()
    assert body["runs"] > 1000 and body["cost"] > body["max_cost"]
    assert seconds < 10  # decoding and pricing only (a run would take minutes)


def test_normal_shapes_up_to_max_pixels_fit_the_budget():
    engine, settings = OrtEngine(SHIPPED), Settings()
    limit = cost_limit(engine, settings)
    for w, h in [(6324, 6324), (20000, 2000), (40000, 1000), (3840, 2160), (8, 8), (1, 1),
                 (3, 2_000_000), (1, 1_000_000)]:
        assert check_cost(engine, h, w, settings).cost <= limit, (w, h)
    with pytest.raises(ImageTooLargeError):
        check_cost(engine, 5_000_000, 1, settings)


def test_the_price_counts_padding_and_runs():
    engine, tiling = OrtEngine(SHIPPED), TileConfig()
    # The same 4 Mpx as a 4-pixel-wide strip and as a square: the strip is padded to the
    # model's min_side and more by its first convolution, in a thousand-odd tiles.
    strip, square = (plan(engine, h, w, 250_000, tiling) for h, w in ((1_000_000, 4),
                                                                     (2000, 2000)))
    assert strip.how == square.how == "tiles"
    assert strip.runs > 100 * square.runs and strip.cost > 3 * square.cost


def test_downscaling_fits_the_padded_area():
    assert fit_size(1, 8_000_000, 8_500_000) == (1, 8_000_000)  # 8 Mpx: fits as pixels
    assert fit_size(1, 8_000_000, 8_500_000, min_side=8) == (1, 1_062_500)  # not as padded
    assert fit_size(4000, 3000, 1_000_000, min_side=8) == fit_size(4000, 3000, 1_000_000)


def test_the_cli_prices_too(tmp_path, capsys):
    src = tmp_path / "strip.png"
    src.write_bytes(strip_png(1, 5_000_000))
    rc = stylize_main([str(src), "-s", "candy", "-o", str(tmp_path / "o.png"),
                       "--model", str(SHIPPED)])
    assert rc == 2 and "network runs" in capsys.readouterr().err
    assert not (tmp_path / "o.png").exists()
