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
    shift_error,
)

VARIANTS = {"separable": {"separable": True}, "resize": {"resize": "all"},
            "ends": {"resize": "ends"}, "ends+separable": {"resize": "ends", "separable": True},
            "resize+separable": {"resize": "all", "separable": True},
            "widths": {"widths": [3, 5, 7, 2, 9, 4, 6]},
            # the alias-free form: low-passes in the body and at both resize ends
            "ends+alias-free": {"resize": "ends", "blur": 3, "up_blur": 3},
            "resize+alias-free": {"resize": "all", "blur": 5, "up_blur": 3}}


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


@pytest.mark.parametrize("name", ["resize", "ends", "ends+separable", "separable",
                                  "ends+alias-free", "resize+alias-free"])
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


def assert_tiles_exactly(engine: OrtEngine, seed: int, size: tuple[int, int], grid: int,
                         inner: int):
    """Tiles on the model's `grid` (margins its receptive radius rounded up to the grid,
    `inner` px of output each) give the whole image's output, within rounding. Returns
    (image, weights, whole output, its statistics, margin) for more checks."""
    rng = np.random.default_rng(seed)
    img = np.clip(rng.normal(128, 60, (*size, 3)), 0, 255).astype(np.uint8)
    candy = np.array([1, 0, 0], np.float32)
    full, stats = engine.stylize_stats(img, candy)
    margin = -(-engine.receptive_radius // grid) * grid
    tiled, n = run_tiles(engine, img, candy, stats, tile_size=2 * margin + inner, margin=margin)
    assert n > 4
    diff = np.abs(tiled.astype(np.int16) - full)
    assert diff.max() <= 1 and (diff > 0).mean() < 0.001
    return img, candy, full, stats, margin


def test_half_resolution_model_tiles_exactly_on_its_grid(resize_onnx):
    engine = OrtEngine(resize_onnx)
    assert engine.grid == 8 and engine.receptive_radius == engine.card.export[
        "norm_stats"]["receptive_radius"]
    img, candy, full, stats, margin = assert_tiles_exactly(engine, 0, (150, 203), 8, 48)
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
@pytest.mark.parametrize("name", ["ends", "resize+separable", "ends+alias-free"])
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


# -- the alias-free resize ends ----------------------------------------------------------------

class OldHalve(torch.nn.Module):
    """Halve as it was before the alias-free ends: what blur = 0 must still compute."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.nn.functional.pad(x, (0, 1, 0, 1), mode="replicate")
        return torch.nn.functional.conv2d(x, torch.full((3, 1, 2, 2), 0.25), stride=2, groups=3)


@pytest.mark.parametrize("resize", ["ends", "all"])
def test_resize_without_blur_computes_what_it_did_bit_for_bit(resize):
    """Checkpoints of resize networks without blur keep their 2x2 mean and their bare
    depth-to-space: the same output, to the bit, as with the old Halve."""
    g = make_tiny_generator(resize=resize, up_blur=3)  # up_blur alone: the body's, not the ends'
    assert g.out_blur is not None and g.halve.kernel.shape[-1] == 2
    plain = make_tiny_generator(resize=resize)
    assert plain.out_blur is None
    x, w = torch.rand(2, 3, 37, 50), one_hot([0, 2], 3)
    assert torch.equal(plain.halve(x), OldHalve()(x))
    with torch.no_grad():
        want = plain(x, w)
        plain.halve = OldHalve()
        assert torch.equal(plain(x, w), want)


def test_alias_free_halving_is_binomial_keeps_the_phase_and_removes_aliases():
    """blur > 0: [1, 3, 3, 1] / 8 per axis (the 2x2 mean after [1, 2, 1] / 4), centred where
    the 2x2 mean is, passing far less of what lies above the half-resolution Nyquist."""
    from stylebox.model.network import Halve

    box, soft = Halve(3, 0), Halve(3, 3)
    assert not list(soft.parameters()) and "kernel" not in soft.state_dict()
    row = torch.tensor([1.0, 3, 3, 1]) / 8
    torch.testing.assert_close(soft.kernel[0, 0], torch.outer(row, row))
    for h, w in ((32, 32), (17, 19)):
        assert soft(torch.rand(1, 3, h, w)).shape == box(torch.rand(1, 3, h, w)).shape
    ramp = torch.arange(40.0).expand(1, 3, 40, 40)  # x[i] = i
    torch.testing.assert_close(soft(ramp)[..., 1:-1], box(ramp)[..., 1:-1])  # 2i + 0.5 both
    flat = torch.full((1, 3, 20, 20), 0.3)
    torch.testing.assert_close(soft(flat), flat[..., ::2, ::2])
    # 0.375 cycles per pixel: above the new Nyquist (0.25), folded back by the stride
    wave = torch.cos(2 * torch.pi * 0.375 * torch.arange(64.0)).expand(1, 3, 64, 64)
    amp = [float(f(wave)[..., 4:-4].abs().max()) for f in (box, soft)]
    assert amp[0] > 0.3 and amp[1] < 0.2 * amp[0]  # cos(3pi/8) = 0.38 vs its cube, 0.06


def test_alias_free_ends_make_a_one_pixel_shift_change_less():
    """Untrained, same weights: each new end low-pass makes a 1-px shift of the photo change
    the resize = "ends" network's output less (the body's low-passes on in all three)."""
    torch.manual_seed(3)
    x, w = torch.rand(1, 3, 96, 96), one_hot(0, 3)
    x = torch.nn.functional.avg_pool2d(x, 3, 1, 1)  # photo-like: not white noise

    def err(g) -> float:
        return shift_error(g, x, w, border=16)

    from stylebox.model.network import Halve

    trained = make_tiny_generator(seed=3, resize="ends").state_dict()
    full = make_tiny_generator(resize="ends", blur=3, up_blur=3)
    full.load_state_dict(trained)  # strict: the new ends hold no tensors
    no_halve = make_tiny_generator(resize="ends", blur=3, up_blur=3)
    no_halve.load_state_dict(trained)
    no_halve.halve = Halve(3, 0)
    body_only = make_tiny_generator(resize="ends", blur=3, up_blur=3)
    body_only.load_state_dict(trained)
    body_only.halve, body_only.out_blur = Halve(3, 0), None
    assert err(full) < 0.9 * err(no_halve) < 0.45 * err(body_only)


def test_radius_grows_by_what_the_alias_free_ends_reach():
    """The stated radius keeps the plain "ends" network's slack over the real reach (the
    upsampling slack, 3 px), so it counts the reach the end low-passes add; the bound test
    alone would pass a radius that forgot them."""
    from stylebox.model.network import Halve

    torch.manual_seed(0)
    plain, full = make_tiny_generator(resize="ends"), make_tiny_generator(
        resize="ends", blur=3, up_blur=3)
    body = make_tiny_generator(resize="ends", blur=3, up_blur=3)
    body.halve, body.out_blur = Halve(3, 0), None  # the body's low-passes, not the ends'
    reach = {k: gradient_reach(g, 192) for k, g in
             {"plain": plain, "full": full, "body": body}.items()}
    assert reach["full"] - reach["body"] == 2  # [1, 3, 3, 1] in, [1, 2, 1] out: 1 px each
    assert full.receptive_radius() - reach["full"] == plain.receptive_radius() - reach[
        "plain"] == 3


@pytest.fixture(scope="module")
def alias_free_ends_onnx(tmp_path_factory):
    g = make_tiny_generator(resize="ends", blur=3, up_blur=3)
    path = tmp_path_factory.mktemp("variant") / "ends-af.onnx"
    export_onnx(g, make_tiny_card(generator=g), path, export_size=32)  # parity-checked
    return path, g


def test_alias_free_ends_export_as_convs_and_serve(alias_free_ends_onnx, tmp_path):
    """The end low-passes are Pad + Conv in the graph: no operator the plain "ends" graph
    lacks; the card carries the wider radius; ONNX Runtime computes what torch does."""
    import onnx

    from stylebox.model.network import UInt8Generator

    path, g = alias_free_ends_onnx
    plain = make_tiny_generator(resize="ends")
    export_onnx(plain, make_tiny_card(generator=plain), tmp_path / "ends.onnx", export_size=32)
    ops = [{n.op_type for n in onnx.load(p).graph.node} for p in (path, tmp_path / "ends.onnx")]
    assert ops[0] == ops[1]
    engine = OrtEngine(path)
    assert engine.receptive_radius == g.receptive_radius() == 44
    assert engine.card.arch["blur"] == engine.card.arch["up_blur"] == 3
    back, _ = load_generator(path)
    assert back.out_blur is not None and back.halve.kernel.shape[-1] == 4
    x = np.random.default_rng(0).integers(0, 256, (37, 45, 3), dtype=np.uint8)
    w = np.eye(3, dtype=np.float32)[2]
    with torch.no_grad():
        want = UInt8Generator(g)(torch.from_numpy(x)[None], torch.from_numpy(w)[None])[0]
    assert np.abs(engine.stylize(x, w).astype(int) - want.numpy()).max() <= 1


def test_alias_free_ends_tile_exactly(alias_free_ends_onnx):
    engine = OrtEngine(alias_free_ends_onnx[0])
    assert_tiles_exactly(engine, 2, (130, 171), 4, 40)


def test_fit_head_solves_through_the_low_pass_after_the_depth_to_space():
    """From an alias-free network into alias-free "ends": the new last conv is the least-
    squares fit of the *filtered* logits (checked against a brute-force solve over every
    weight of the last conv), not of the logits before the low-pass."""
    from stylebox.model.surgery import fit_head

    src = make_tiny_generator(blur=3, up_blur=3)
    dst = Generator(GeneratorConfig(**{**src.cfg.to_dict(), "resize": "ends"})).eval()
    assert transplant(src, dst) == ["out_conv.weight"]  # the bias: ICNR, 4 copies
    photos = torch.rand(2, 3, 32, 32)
    x, w = photos.repeat(3, 1, 1, 1), torch.eye(3).repeat_interleave(2, 0)
    got: dict[str, torch.Tensor] = {}
    hooks = [src.out_conv.register_forward_hook(lambda m, a, o: got.setdefault("src", o)),
             dst.out_pad.register_forward_hook(lambda m, a, o: got.setdefault("f", o))]
    with torch.no_grad():
        rms = fit_head(src, dst, photos)
        src(x, w)
        dst(x, w)
    for h in hooks:
        h.remove()
    f, target = got["f"].double(), got["src"].double()
    conv = dst.out_conv

    def head(weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        y = dst.shuffle(torch.nn.functional.conv2d(f, weight, bias))
        return torch.nn.functional.conv2d(dst.out_blur.pad(y), dst.out_blur.kernel.double(),
                                          groups=3)

    with torch.no_grad():
        fitted = head(conv.weight.double(), conv.bias.double())
        assert abs(float((fitted - target).pow(2).mean().sqrt()) - rms) < 1e-4
        # brute force: the head is linear in its weights; one column per weight
        params = torch.cat([conv.weight.flatten(), conv.bias]).double()
        nw = conv.weight.numel()

        def unit(i: int) -> torch.Tensor:
            e = torch.zeros_like(params)
            e[i] = 1.0
            return head(e[:nw].reshape(conv.weight.shape), e[nw:]).flatten()

        a = torch.stack([unit(i) for i in range(len(params))], 1)
        best = torch.linalg.lstsq(a, target.flatten()).solution
        optimum = float((a @ best - target.flatten()).pow(2).mean().sqrt())
        assert optimum <= rms < 1.03 * optimum  # the optimum but for fit_head's ridge
        # fitting before the low-pass, as for a bare depth-to-space, is measurably worse
        dst.out_blur, blur = None, dst.out_blur
        fit_head(src, dst, photos)
        dst.out_blur = blur
        naive = head(conv.weight.double(), conv.bias.double())
        assert float((naive - target).pow(2).mean().sqrt()) > 1.05 * optimum
