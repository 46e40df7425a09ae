"""Tiled inference (service/tiling.py): exact given the statistics, seam-free with the
downscaled pass's statistics, served by the API and the CLI, and old models still serve."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from stylebox.service.backends.ort import OrtEngine
from stylebox.service.cli import stylize_main
from stylebox.service.pipeline import stylize_fitted
from stylebox.service.settings import Settings
from stylebox.service.tiling import TileConfig, plan_tiles, run_tiles, stats_input
from tests.conftest import (
    encode,
    gradient_reach,
    make_client,
    make_tiny_card,
    make_tiny_generator,
    pixels,
)

CANDY = np.array([1, 0, 0], np.float32)


def photo(h: int, w: int, noise: float = 4.0, seed: int = 0) -> np.ndarray:
    """Smooth gradients, a dark block (so tiles see different statistics) and mild noise."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([200 * xx + 30, 120 + 80 * np.sin(6 * yy), 255 * xx * yy], -1)
    base[: h // 2, : w // 3] *= 0.3
    base += np.random.default_rng(seed).normal(0, noise, base.shape)
    return np.clip(base, 0, 255).astype(np.uint8)  # (H, W, 3)


def seam_ratio(out: np.ndarray, core: int) -> float:
    """Mean |step| between neighbours across tile boundaries / within tiles (1 = no seam)."""
    o = out.astype(np.float64)
    ratios = []
    for axis in (0, 1):
        steps = np.abs(np.diff(o, axis=axis)).mean(axis=(1 - axis, 2))  # per pair of lines
        edges = np.arange(core, o.shape[axis], core) - 1  # pair (core-1, core) straddles
        inside = np.setdiff1d(np.arange(len(steps)), edges)
        ratios.append(steps[edges].mean() / steps[inside].mean())
    return max(ratios)


def test_card_records_the_statistics_and_receptive_radius(engine):
    spec = engine.card.export["norm_stats"]
    assert engine.supports_stats and spec["size"] == engine.stats_size == 2 * sum(
        spec["channels"])
    assert len(spec["channels"]) == 3 + 2 * 2 + 2  # down, 2 residual blocks x 2, up
    assert engine.receptive_radius == spec["receptive_radius"] == 36
    assert engine.card.export["parity"]["sizes"][-1].endswith("+stats")


@pytest.mark.parametrize("blur, up_blur, radius", [(0, 0, 36), (3, 0, 39), (5, 0, 42),
                                                   (0, 3, 39), (3, 3, 42), (3, 5, 45)])
def test_receptive_radius_bounds_the_real_one(blur, up_blur, radius):
    """The analytic radius is an upper bound of the gradient's reach (statistics fixed),
    with and without the anti-aliasing low-passes (before the strided convs, after the
    upsamples)."""
    g = make_tiny_generator(blur=blur, up_blur=up_blur)
    assert 24 + blur + up_blur < gradient_reach(g, 160) <= g.receptive_radius() == radius


def test_tiles_with_the_full_images_statistics_equal_the_untiled_output(engine):
    img = photo(150, 203)  # neither side a multiple of 4 or of the tile core
    full, stats = engine.stylize_stats(img, CANDY)
    np.testing.assert_array_equal(full, engine.stylize(img, CANDY))  # use_stats = 0 is plain
    tiled, n = run_tiles(engine, img, CANDY, stats, tile_size=128, margin=36)
    assert n == 3 * 4  # cores of 128 - 2 * 36 = 56 px
    diff = np.abs(tiled.astype(np.int16) - full)
    assert diff.max() <= 1 and (diff > 0).mean() < 0.001  # float rounding at most
    # Too little context is visibly wrong: the margin is what makes the tiles exact.
    short, _ = run_tiles(engine, img, CANDY, stats, tile_size=128, margin=8)
    assert np.abs(short.astype(np.int16) - full).max() > 20


def test_downscaled_statistics_leave_no_seams(engine):
    img = photo(192, 256)
    full = engine.stylize(img, CANDY)
    stats = engine.stylize_stats(stats_input(img, 4096), CANDY)[1]  # 12x fewer pixels
    tiled, _ = run_tiles(engine, img, CANDY, stats, tile_size=128, margin=36)
    naive = np.empty_like(img)  # each tile with its own statistics: what seams look like
    for t in plan_tiles(192, 256, 128, 36):
        naive[t.dst] = engine.stylize(img[t.src], CANDY)[t.crop]
    assert seam_ratio(full, 56) < 1.2 and seam_ratio(tiled, 56) < 1.2
    assert seam_ratio(naive, 56) > 1.35  # the metric does see seams
    mad = {k: np.abs(v.astype(np.int16) - full).mean() for k, v in
           {"tiled": tiled, "naive": naive}.items()}
    assert mad["tiled"] < 0.5 * mad["naive"]  # close to the untiled result


def test_plan_covers_every_pixel_once_on_the_grid():
    for h, w in ((1, 1), (57, 300), (1000, 999)):
        cover = np.zeros((h, w), np.int32)
        for t in plan_tiles(h, w, tile_size=200, margin=60):
            cover[t.dst] += 1
            assert t.src[0].start % 4 == 0 and t.src[1].start % 4 == 0
            assert t.src[0].stop - t.src[0].start <= 200 and t.src[1].stop - t.src[1].start <= 200
        assert (cover == 1).all()


SMALL = {"max_inference_pixels": 4096, "tile_size": 128, "tile_stats_pixels": 4096}


def test_api_tiles_an_image_above_the_budget(tiny_onnx, engine):
    img = photo(120, 150)  # 18 000 px > 4096
    expect = stylize_fitted(engine, img, CANDY, 4096, TileConfig(128, 0, 4096))
    assert expect.tiles == 3 * 3
    with make_client(engine, tiny_onnx, **SMALL) as client:
        r = client.post("/stylize?style=candy", content=encode(img),
                        headers={"Content-Type": "image/png"})
        assert r.status_code == 200, r.text
        assert r.headers["X-Stylebox-Tiles"] == "9"
        assert r.headers["X-Stylebox-Inference-Size"] == "150x120"  # full size, in tiles
        np.testing.assert_array_equal(pixels(r.content), expect.rgb)
        small = client.post("/stylize?style=candy", content=encode(img[:60, :60]),
                            headers={"Content-Type": "image/png"})
        assert small.status_code == 200 and "X-Stylebox-Tiles" not in small.headers
    with make_client(engine, tiny_onnx, large_images="downscale", **SMALL) as client:
        r = client.post("/stylize?style=candy", content=encode(img),
                        headers={"Content-Type": "image/png"})
        assert r.status_code == 200 and "X-Stylebox-Tiles" not in r.headers
        assert r.headers["X-Stylebox-Inference-Size"] == "71x57"  # fit_size(150, 120, 4096)
        assert pixels(r.content).shape == (120, 150, 3)


def test_cli_tiles_too(tiny_onnx, engine, tmp_path, monkeypatch, capsys):
    img = photo(120, 150)
    src, out = tmp_path / "big.png", tmp_path / "out.png"
    src.write_bytes(encode(img))
    for key, value in {**SMALL, "engine": "onnxruntime"}.items():  # the engine `expect` ran on
        monkeypatch.setenv(f"STYLEBOX_{key.upper()}", str(value))
    assert stylize_main([str(src), "-s", "candy", "-o", str(out), "--model", str(tiny_onnx)]) == 0
    assert "9 tiles" in capsys.readouterr().out
    expect = stylize_fitted(engine, img, CANDY, 4096, TileConfig(128, 0, 4096)).rgb
    np.testing.assert_array_equal(np.asarray(Image.open(out)), expect)


def test_a_model_without_statistics_still_serves_by_downscaling(tmp_path):
    from stylebox.model.export import export_onnx

    path = tmp_path / "old.onnx"
    card = export_onnx(make_tiny_generator(), make_tiny_card(), path, export_size=32,
                       norm_stats=False)
    assert "norm_stats" not in card.export and set(card.export["outputs"]) == {"stylized"}
    old = OrtEngine(path)
    assert not old.supports_stats
    with pytest.raises(ValueError, match="without norm_stats"):
        old.stylize_stats(photo(16, 16), CANDY)
    with make_client(None, path, **SMALL) as client:
        r = client.post("/stylize?style=udnie", content=encode(photo(120, 150)),
                        headers={"Content-Type": "image/png"})
        assert r.status_code == 200 and "X-Stylebox-Tiles" not in r.headers
        assert r.headers["X-Stylebox-Inference-Size"] == "71x57"
        assert pixels(r.content).shape == (120, 150, 3)


def test_large_images_setting_is_validated(monkeypatch):
    monkeypatch.setenv("STYLEBOX_LARGE_IMAGES", "crop")
    with pytest.raises(ValueError):
        Settings()
    monkeypatch.setenv("STYLEBOX_LARGE_IMAGES", "downscale")
    assert TileConfig.from_settings(Settings()) is None


def test_tiledemo_writes_the_table_and_crops(tiny_onnx, tmp_path, capsys):
    from stylebox.tiledemo import main as demo

    assert demo(["--model", str(tiny_onnx), "--style", "0", "--size", "320x200", "--budget",
                 "20000", "--tile-size", "128", "--stats-pixels", "8192", "--runs", "1",
                 "--crop", "128x96", "--out", str(tmp_path)]) == 0
    table = capsys.readouterr().out
    rows = {line.split("|")[1].strip(): line.split("|")[2:-1] for line in table.splitlines()
            if line.startswith("| ") and not line.startswith(("| mode", "| ---"))}
    assert set(rows) == {"full", "tiled", "downscale", "naive"}
    assert rows["tiled"][2].strip() == str(len(plan_tiles(200, 320, 128, 36)))
    assert float(rows["full"][3]) == 0 < float(rows["tiled"][3])
    for mode in rows:
        assert Image.open(tmp_path / f"tiling-{mode}.jpg").size == (128, 96)
