"""The cheaper generator variants (model/network.py): separable convs, the half-resolution
body with a sub-pixel last conv, explicit pruned widths. Each is a card field only: it
exports, passes the ONNX parity check, serves and tiles like the standard network, and
model/surgery.py starts it from a trained network's weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stylebox.model.checkpoint import load_checkpoint, load_generator, save_checkpoint
from stylebox.model.export import export_onnx
from stylebox.model.network import Generator, GeneratorConfig, one_hot
from stylebox.model.surgery import factorise, transplant
from stylebox.service.backends.ort import OrtEngine
from stylebox.service.tiling import plan_tiles, run_tiles
from tests.conftest import (
    gradient_reach,
    host_engines,
    make_tiny_card,
    make_tiny_generator,
    open_host_engine,
)

VARIANTS = {"separable": {"separable": True}, "resize": {"resize": "all"},
            "ends": {"resize": "ends"}, "ends+separable": {"resize": "ends", "separable": True},
            "resize+separable": {"resize": "all", "separable": True},
            "widths": {"widths": [3, 5, 7, 2, 9, 4, 6]}}


@pytest.mark.parametrize("name", VARIANTS)
def test_variant_keeps_the_size_and_its_card_rebuilds_it(name, tmp_path):
    g = make_tiny_generator(**VARIANTS[name])
    for h, w in ((g.min_side(), g.min_side()), (17, 19), (33, 40)):  # odd: crop, 2x2 pad
        assert g(torch.rand(2, 3, h, w), one_hot([0, 2], 3)).shape == (2, 3, h, w)
    card = make_tiny_card(generator=g)
    assert {k: card.arch[k] for k in VARIANTS[name]} == VARIANTS[name]
    save_checkpoint(tmp_path / "v.pt", g, card)
    back, _, _ = load_checkpoint(tmp_path / "v.pt")
    assert back.cfg == g.cfg


def test_variants_are_cheaper_where_they_should_be():
    n = {k: sum(p.numel() for p in make_tiny_generator(**v).parameters())
         for k, v in {"dense": {}, **VARIANTS}.items()}
    assert n["separable"] < n["dense"] / 3  # 3x3 convs: 9 Cin + Cin Cout instead of 9 Cin Cout
    assert n["resize"] > n["dense"]  # the same layers plus 4x the last conv's filters
    assert n["ends"] < n["dense"]  # no full-resolution up layer, a 3x3 last conv
    assert make_tiny_generator(resize="all").grid() == 8
    assert make_tiny_generator(resize="ends").grid() == make_tiny_generator().grid() == 4


@pytest.mark.parametrize("name", ["resize", "ends", "ends+separable", "separable"])
def test_receptive_radius_bounds_the_real_one(name):
    """The analytic radius is an upper bound of the gradient's reach, statistics fixed, at
    every phase of the variant's grid, and not loose by more than the upsampling slack."""
    g = make_tiny_generator(**VARIANTS[name])
    assert 0.8 * g.receptive_radius() < gradient_reach(g, 256) <= g.receptive_radius()


@pytest.fixture(scope="module")
def resize_onnx(tmp_path_factory):
    g = make_tiny_generator(resize="all", separable=True)
    path = tmp_path_factory.mktemp("variant") / "resize.onnx"
    export_onnx(g, make_tiny_card(generator=g), path, export_size=32)  # parity-checked
    return path


def test_half_resolution_model_tiles_exactly_on_its_grid(resize_onnx):
    engine = OrtEngine(resize_onnx)
    assert engine.grid == 8 and engine.receptive_radius == engine.card.export[
        "norm_stats"]["receptive_radius"]
    rng = np.random.default_rng(0)
    img = np.clip(rng.normal(128, 60, (150, 203, 3)), 0, 255).astype(np.uint8)
    candy = np.array([1, 0, 0], np.float32)
    full, stats = engine.stylize_stats(img, candy)
    margin = -(-engine.receptive_radius // 8) * 8
    tiled, n = run_tiles(engine, img, candy, stats, tile_size=2 * margin + 48, margin=margin)
    assert n > 4
    diff = np.abs(tiled.astype(np.int16) - full)
    assert diff.max() <= 1 and (diff > 0).mean() < 0.001
    # On the 4-pixel grid of the standard network, tiles start at odd half-resolution pixels
    # and the 2x2 mean pairs different pixels: the output moves.
    off = np.empty_like(img)
    for t in plan_tiles(150, 203, 2 * margin + 44, margin, grid=4):
        off[t.dst] = engine.stylize_stats(img[t.src], candy, stats)[0][t.crop]
    assert np.abs(off.astype(np.int16) - full).max() > 10


def test_onnx_weights_load_back_into_torch(resize_onnx):
    g, card = load_generator(resize_onnx)
    ref = make_tiny_generator(resize="all", separable=True)
    assert card.arch["resize"] == "all"
    for (n, a), (_, b) in zip(g.state_dict().items(), ref.state_dict().items(), strict=True):
        assert torch.equal(a, b), n


def test_factorise_is_exact_for_separable_kernels_and_best_rank_one_otherwise():
    dw, pw = torch.randn(4, 1, 3, 3), torch.randn(6, 4, 1, 1)
    dense = pw * dw.reshape(1, 4, 3, 3)  # (6, 4, 3, 3): each input channel one spatial shape
    d2, p2 = factorise(dense)
    torch.testing.assert_close(p2 * d2.reshape(1, 4, 3, 3), dense)
    w = torch.randn(6, 4, 3, 3)
    d3, p3 = factorise(w)
    err = (p3 * d3.reshape(1, 4, 3, 3) - w).pow(2).sum()
    noise = (p3 * (d3 + 0.01 * torch.randn_like(d3)).reshape(1, 4, 3, 3) - w).pow(2).sum()
    assert err < noise


def test_transplant_starts_the_half_resolution_model_as_the_upsampled_original():
    """ICNR: the sub-pixel conv starts as 4 copies of the original RGB filters, so the new
    network is the trained one run on the halved photo, nearest-upsampled (no checkerboard)."""
    src = make_tiny_generator()
    dst = Generator(GeneratorConfig(**{**src.cfg.to_dict(), "resize": "all"}))
    assert transplant(src, dst) == []
    x, w = torch.rand(1, 3, 64, 48), one_hot(1, 3)
    with torch.no_grad():
        expect = torch.nn.functional.interpolate(
            src(torch.nn.functional.avg_pool2d(x, 2), w), scale_factor=2.0, mode="nearest")
        torch.testing.assert_close(dst(x, w), expect)
    sep = Generator(GeneratorConfig(**{**src.cfg.to_dict(), "separable": True}))
    assert transplant(src, sep) == []  # every tensor filled, by rank-1 factorisation


@pytest.mark.parametrize("separable", [False, True])
def test_a_new_last_conv_starts_from_a_least_squares_fit(separable):
    """resize="ends" has a last conv no trained network has: fit_head solves it so the new
    network starts close to the trained one (far closer than from random weights)."""
    from stylebox.model.surgery import fit_head

    src = make_tiny_generator()
    dst = Generator(GeneratorConfig(**{**src.cfg.to_dict(), "resize": "ends",
                                       "separable": separable}))
    fresh = transplant(src, dst)
    assert fresh and all(n.startswith("out_conv") for n in fresh)
    x, w = torch.rand(2, 3, 64, 64), one_hot([0, 1], 3)
    with torch.no_grad():
        before = (dst(x, w) - src(x, w)).abs().mean()
        fit_head(src, dst.eval(), torch.rand(3, 3, 48, 48))
        after = (dst(x, w) - src(x, w)).abs().mean()
    # separable: the factorised body is further from src, which no last conv can undo
    assert after < (0.9 if separable else 0.6) * before


@pytest.mark.parametrize("kind", host_engines(("f32",)))
@pytest.mark.parametrize("name", ["ends", "resize+separable"])
def test_every_engine_serves_the_variant_graphs(name, kind, tmp_path):
    """Depth-to-space, the replicate pad of the 2x2 mean and grouped convs run on OpenVINO as
    on ONNX Runtime (f32: the same numbers within rounding)."""
    g = make_tiny_generator(**VARIANTS[name])
    path = tmp_path / f"{name}.onnx"
    export_onnx(g, make_tiny_card(generator=g), path, export_size=32)
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (45, 61, 3), dtype=np.uint8)
    candy = np.array([1, 0, 0], np.float32)
    ref = OrtEngine(path).stylize(img, candy)
    got = open_host_engine(path, kind).stylize(img, candy)
    assert got.shape == img.shape
    assert np.abs(got.astype(np.int16) - ref).max() <= 2
