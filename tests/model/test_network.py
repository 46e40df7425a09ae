"""The generator: shapes at any size, α channel counts, CIN selection and blending, the card."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from stylebox.model.card import CardError, ModelCard, StyleInfo
from stylebox.model.checkpoint import load_checkpoint, save_checkpoint
from stylebox.model.network import ConditionalInstanceNorm, Generator, GeneratorConfig, one_hot
from tests.conftest import make_tiny_card, make_tiny_generator, shift_error


@pytest.mark.parametrize("h,w", [(8, 8), (37, 53), (64, 64), (101, 30), (9, 250)])
def test_any_size_keeps_shape_and_range(h, w):
    g = make_tiny_generator()
    x = torch.rand(2, 3, h, w)
    with torch.no_grad():
        y = g(x, one_hot([0, 2], 3))
    assert y.shape == (2, 3, h, w)
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0


@pytest.mark.parametrize(
    "alpha,expected", [(1.0, (32, 64, 128)), (0.5, (16, 32, 64)), (0.25, (8, 16, 32)),
                       (0.1, (3, 6, 13))],
)
def test_alpha_scales_every_channel_count(alpha, expected):
    g = Generator(GeneratorConfig(n_styles=4, alpha=alpha))
    c1, c2, c3 = expected
    assert [m.conv.out_channels for m in g.down] == [c1, c2, c3]
    assert all(b.a.conv.out_channels == c3 and b.b.conv.out_channels == c3 for b in g.res)
    assert [m.conv.out_channels for m in g.up] == [c2, c1]
    assert g.out_conv.in_channels == c1 and g.out_conv.out_channels == 3
    # every CIN table is (N styles, C)
    for m in g.modules():
        if isinstance(m, ConditionalInstanceNorm):
            assert m.gamma.shape[0] == 4 and m.gamma.shape == m.beta.shape
    with torch.no_grad():
        assert g(torch.rand(1, 3, 20, 28), one_hot(3, 4)).shape == (1, 3, 20, 28)


def test_smaller_alpha_has_far_fewer_parameters():
    n = [sum(p.numel() for p in Generator(GeneratorConfig(n_styles=8, alpha=a)).parameters())
         for a in (1, 0.5, 0.25)]
    assert n[0] > 3.5 * n[1] > 3.5**2 * n[2]  # channels halve -> conv params quarter


def test_cin_one_hot_selects_a_row_and_blend_mixes_rows():
    norm = ConditionalInstanceNorm(channels=5, n_styles=3)
    with torch.no_grad():
        norm.gamma.normal_()
        norm.beta.normal_()
    x = torch.randn(1, 5, 6, 7)
    xn = (x - x.mean((2, 3), keepdim=True)) / torch.sqrt(x.var((2, 3), unbiased=False,
                                                              keepdim=True) + 1e-5)
    for s in range(3):
        want = xn * norm.gamma[s].view(1, 5, 1, 1) + norm.beta[s].view(1, 5, 1, 1)
        torch.testing.assert_close(norm(x, one_hot(s, 3)), want, atol=1e-5, rtol=1e-5)
    w = torch.tensor([[0.2, 0.5, 0.3]])
    g, b = w @ norm.gamma, w @ norm.beta
    torch.testing.assert_close(norm(x, w), xn * g.view(1, 5, 1, 1) + b.view(1, 5, 1, 1),
                               atol=1e-5, rtol=1e-5)


def test_blend_equals_a_model_whose_tables_hold_the_mixed_row():
    g = make_tiny_generator()
    w = torch.tensor([[0.3, 0.7, 0.0]])
    single = Generator(GeneratorConfig(n_styles=1, alpha=0.25, n_residual=2)).eval()
    state = {k: (w @ v if k.endswith(("gamma", "beta")) else v) for k, v in g.state_dict().items()}
    single.load_state_dict(state)
    x = torch.rand(1, 3, 40, 44)
    with torch.no_grad():
        torch.testing.assert_close(g(x, w), single(x, torch.ones(1, 1)), atol=1e-5, rtol=1e-4)


def test_styles_differ_and_batch_rows_are_independent():
    g = make_tiny_generator()
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        outs = [g(x, one_hot(s, 3)) for s in range(3)]
        batched = g(x.repeat(3, 1, 1, 1), one_hot([0, 1, 2], 3))
    assert (outs[0] - outs[1]).abs().mean() > 1e-3 and (outs[1] - outs[2]).abs().mean() > 1e-3
    torch.testing.assert_close(batched, torch.cat(outs), atol=1e-5, rtol=1e-4)


def test_config_round_trips_through_json():
    cfg = GeneratorConfig(n_styles=8, alpha=0.5, n_residual=3)
    back = GeneratorConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg
    with pytest.raises(ValueError):
        GeneratorConfig(n_styles=0)


def test_card_round_trip_and_validation():
    card = make_tiny_card()
    back = ModelCard.from_json(card.to_json())
    assert back == card and back.style_names == ["candy", "mosaic", "udnie"]
    assert back.index("mosaic") == 1
    assert StyleInfo("starry_night").title == "Starry Night"
    with pytest.raises(CardError, match="duplicate"):
        ModelCard(name="x", version="1", alpha=1, styles=[StyleInfo("a"), StyleInfo("a")])
    with pytest.raises(CardError, match="lowercase"):
        StyleInfo("Bad Name")
    with pytest.raises(CardError, match="lacks"):
        ModelCard.from_dict({"name": "x"})
    with pytest.raises(CardError, match="JSON"):
        ModelCard.from_json("{not json")


def test_checkpoint_round_trip(tmp_path):
    g, card = make_tiny_generator(), make_tiny_card()
    save_checkpoint(tmp_path / "c.pt", g, card, step=7)
    g2, card2, state = load_checkpoint(tmp_path / "c.pt")
    assert card2 == card and state["step"] == 7
    for (k, a), (_, b) in zip(g.state_dict().items(), g2.state_dict().items(), strict=True):
        assert torch.equal(a, b), k


# -- anti-aliasing (blur) ----------------------------------------------------------------------

def test_blur_is_a_normalised_low_pass_without_weights():
    from stylebox.model.network import Blur

    b = Blur(4, 3)
    assert not list(b.parameters()) and "kernel" not in b.state_dict()  # nothing to train/save
    flat = torch.full((1, 4, 9, 9), 0.7)
    assert torch.allclose(b(flat), flat)  # sums to 1: flat areas pass unchanged
    x = torch.zeros(1, 4, 9, 9)
    x[..., ::2] = 1.0  # the highest horizontal frequency (stripes of period 2) ...
    assert b(x)[..., 2:-2].std() < 1e-6  # ... is removed entirely by [1, 2, 1] / 4


@pytest.mark.parametrize("variant", [{"blur": 3}, {"up_blur": 3}, {"blur": 3, "up_blur": 5}])
def test_blur_networks_share_checkpoints_with_plain_ones(variant):
    """A blurred network takes a plain one's weights as they are (fine-tuning starts there)."""
    plain, blurred = make_tiny_generator(), make_tiny_generator(seed=1, **variant)
    blurred.load_state_dict(plain.state_dict())  # strict: the same tensors
    x, w = torch.rand(1, 3, 40, 44), one_hot(0, 3)
    a, b = plain(x, w), blurred(x, w)
    assert a.shape == b.shape == (1, 3, 40, 44) and not torch.equal(a, b)


def test_blur_makes_the_network_less_sensitive_to_a_one_pixel_shift():
    """Untrained, with the same weights: a 1-px shift of the input changes the output less
    with the low-pass before the strided convolutions (Zhang 2019)."""
    torch.manual_seed(3)
    x, w = torch.rand(1, 3, 64, 64), one_hot(0, 3)
    x = torch.nn.functional.avg_pool2d(x, 3, 1, 1)  # photo-like: not white noise

    def err(g) -> float:
        return shift_error(g, x, w, border=12)

    plain = make_tiny_generator(seed=4)
    blurred = make_tiny_generator(blur=3)
    blurred.load_state_dict(plain.state_dict())
    smooth = make_tiny_generator(blur=3, up_blur=3)
    smooth.load_state_dict(plain.state_dict())
    # Both ends low-passed (the alias-free form) beat the strided end alone.
    assert err(smooth) < 0.9 * err(blurred) < 0.81 * err(plain)


def test_smooth_upsampling_is_bilinear():
    """Nearest x2 then [1, 2, 1] is bilinear x2 (half-pixel centres): the features move
    with the content instead of in steps of a coarse pixel."""
    from stylebox.model.network import Blur

    x = torch.rand(1, 2, 6, 7)
    near = torch.nn.functional.interpolate(x, scale_factor=2.0, mode="nearest")
    bil = torch.nn.functional.interpolate(x, scale_factor=2.0, mode="bilinear",
                                          align_corners=False)
    assert torch.allclose(Blur(2, 3)(near)[..., 1:-1, 1:-1], bil[..., 1:-1, 1:-1], atol=1e-6)


@pytest.mark.parametrize("separable", [False, True])
@pytest.mark.parametrize("taps", [3, 5])
@pytest.mark.parametrize("size", [(4, 4), (13, 10), (31, 22)])
def test_alias_free_layers_run_in_their_cheap_exact_form(separable, taps, size):
    """The low-pass before a strided conv is folded into its kernel, and nearest x2 + [1, 2, 1]
    runs as bilinear x2: the same numbers as the explicit Pad + depthwise Conv, borders
    included, at any size down to the smallest a layer sees."""
    from stylebox.model.network import ConvCIN

    torch.manual_seed(0)
    x, w = torch.rand(2, 4, *size), torch.stack([one_hot(1, 3)[0], one_hot(2, 3)[0]])
    down = ConvCIN(4, 6, 3, 3, stride=2, blur=taps, separable=separable)
    up = ConvCIN(4, 6, 3, 3, upsample=True, up_blur=taps, separable=separable)
    for layer in (down, up):
        torch.nn.init.normal_(layer.norm.gamma, 1.0, 0.3)  # not the identity: nothing hides
        z = x if not layer.upsample else F.interpolate(x, scale_factor=2.0, mode="nearest")
        explicit = F.relu(layer.norm(layer.conv(layer.pad(layer.blur(z))), w))
        assert torch.allclose(layer(x, w), explicit, atol=5e-5)  # float rounding only


@pytest.mark.parametrize("key", ["blur", "up_blur"])
def test_blur_config_round_trips_and_is_checked(key):
    cfg = GeneratorConfig(n_styles=2, **{key: 5})
    assert GeneratorConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.arch()[key] == 5
    plain = GeneratorConfig.from_dict({"n_styles": 2})
    assert getattr(plain, key) == 0 and key not in plain.arch()  # old cards: no blur
    with pytest.raises(ValueError, match=key):
        GeneratorConfig(n_styles=2, **{key: 4})
