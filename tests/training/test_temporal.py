"""training/temporal.py: synthetic motion with exact warps, ReCoNet's two temporal terms, and
a temporal fine-tuning run from another checkpoint (init_from)."""

from __future__ import annotations

import csv
import math

import pytest
import torch

from stylebox.model.checkpoint import load_checkpoint
from stylebox.training.config import ConfigError, TrainConfig
from stylebox.training.loop import TrainError, train
from stylebox.training.temporal import (
    Motion,
    feature_loss,
    frame_pair,
    output_loss,
    random_motion,
)


def _shift(dx: float, dy: float, h: int, w: int) -> Motion:
    return Motion(torch.tensor([[[1.0, 0.0, 2 * dx / w], [0.0, 1.0, 2 * dy / h]]]))


def test_an_integer_shift_warps_exactly_and_masks_the_uncovered_edge():
    x = torch.rand(1, 3, 20, 24)
    m = _shift(3, -2, 20, 24)  # frame2(p) = frame1(p + (3, -2))
    y = m.warp(x)
    torch.testing.assert_close(y[..., 2:, :21], x[..., :18, 3:], atol=1e-5, rtol=0)
    mask = m.mask(y, border=0)[0, 0]
    assert mask[2:, :21].all() and not mask[:2].any() and not mask[:, 21:].any()


def test_the_same_motion_holds_at_the_features_resolution():
    """Normalised coordinates: one theta moves a 4x smaller feature map by a quarter."""
    x = torch.rand(1, 2, 32, 32)
    m = _shift(8, 0, 32, 32)
    small = torch.nn.functional.avg_pool2d(x, 4)
    torch.testing.assert_close(m.warp(small)[..., :, :6], small[..., :, 2:], atol=1e-5, rtol=0)


def test_random_motion_stays_within_its_bounds():
    cfg = TrainConfig(motion_shift=2.0, motion_rotate=3.0, motion_zoom=0.05)
    theta = random_motion(256, 40, 40, cfg, torch.Generator().manual_seed(0)).theta
    a = theta[:, :, :2]
    zoom = 1 / a.det().sqrt()  # square frames: the matrix is a rotation over the zoom
    angle = torch.atan2(a[:, 1, 0], a[:, 0, 0])
    assert (zoom - 1).abs().max() <= 0.05 + 1e-6 and (zoom - 1).abs().max() > 0.03
    assert angle.abs().max() <= math.radians(3) + 1e-6
    shift_px = theta[:, :, 2] * 20  # normalised -> px for a 40-px frame
    assert shift_px.abs().max() <= 2.0 + 1e-5 and shift_px.abs().max() > 1.5


def test_output_term_is_zero_for_a_stable_map_and_sees_a_flickering_one():
    cfg = TrainConfig(motion_noise=0.0)
    photo = torch.rand(2, 3, 32, 32)
    x1, x2, motion = frame_pair(photo, cfg, torch.Generator().manual_seed(1))
    assert output_loss(x1, x2, x1, x2, motion) < 1e-12  # identity: follows the motion exactly
    flicker = (x2 + 0.1 * torch.randn_like(x2)).clamp(0, 1)
    assert output_loss(x1, x1.flip(-1), x1, x2, motion) > 0.01
    assert output_loss(x1, flicker, x1, x2, motion) > 0.004


def test_output_term_lets_the_inputs_own_brightness_change_through():
    photo = torch.rand(1, 3, 24, 24) * 0.5
    m = _shift(0, 0, 24, 24)
    brighter = photo + 0.2  # a light turned on: the output may follow it
    assert output_loss(photo, brighter, photo, brighter, m) < 1e-10
    assert output_loss(photo, photo, photo, brighter, m) > 0.03  # not following it costs


def test_feature_term_is_relative():
    f1 = torch.rand(1, 8, 10, 10)
    m = _shift(0, 0, 10, 10)
    assert feature_loss(f1, f1, m) < 1e-12
    assert feature_loss(f1, 2 * f1, m).item() == pytest.approx(
        feature_loss(10 * f1, 20 * f1, m).item(), rel=1e-4)


def test_negative_temporal_settings_are_refused():
    with pytest.raises(ConfigError):
        TrainConfig(temporal_weight=-1)
    with pytest.raises(ConfigError):
        TrainConfig(blur=2)
    with pytest.raises(ConfigError, match="up_blur"):
        TrainConfig(up_blur=1)


def test_temporal_fine_tuning_from_a_checkpoint(base_run):
    cfg, vgg, tmp = base_run
    base = load_checkpoint(tmp / "base" / "last.pt")[0]
    tuned_cfg = cfg.replace(init_from=str(tmp / "base" / "last.pt"), steps=2, blur=3,
                            up_blur=3, temporal_weight=50.0, temporal_feature_weight=0.5)
    train(tuned_cfg, tmp / "tuned", vgg=vgg, progress=False)
    tuned, card, _ = load_checkpoint(tmp / "tuned" / "last.pt")
    # The alias-free form (both low-passes) starts from a plain checkpoint's weights.
    assert card.arch["blur"] == 3 and card.arch["up_blur"] == 3
    assert card.training["temporal_weight"] == 50.0 and card.training["up_blur"] == 3
    assert card.training["fine_tuned_from"]["steps_done"] == 3  # its lineage
    # It started from the base weights (2 small steps later they are close, not equal).
    pb, pt = base.state_dict(), tuned.state_dict()
    moved = [(pt[k] - pb[k]).abs().max().item() for k in pb]
    assert max(moved) > 0 and max(moved) < 0.5
    with open(tmp / "tuned" / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows and float(rows[-1]["temporal"]) > 0 and float(rows[-1]["temporal_feature"]) > 0
    total = float(rows[-1]["loss"])
    assert total > float(rows[-1]["content"])  # the temporal terms are in the total


def test_init_from_refuses_another_style_list(base_run):
    cfg, vgg, tmp = base_run
    other = cfg.replace(init_from=str(tmp / "base" / "last.pt"),
                        styles=[cfg.styles[0]])  # one style instead of two
    with pytest.raises(TrainError, match="styles"):
        train(other, tmp / "other", vgg=vgg, progress=False)


def test_per_style_scale_weighs_each_samples_temporal_terms():
    out1, out2 = torch.rand(2, 3, 12, 12), torch.rand(2, 3, 12, 12)
    m = Motion(_shift(0, 0, 12, 12).theta.expand(2, 2, 3))
    alone = [output_loss(out1[i:i + 1], out2[i:i + 1], out1[i:i + 1], out1[i:i + 1],
                         Motion(m.theta[i:i + 1])) for i in range(2)]
    both = output_loss(out1, out2, out1, out1, m, torch.tensor([3.0, 0.0]))
    assert both.item() == pytest.approx(3 * alone[0].item() / 2, rel=1e-5)  # mean over both
    assert output_loss(out1, out2, out1, out1, m, torch.ones(2)).item() == pytest.approx(
        output_loss(out1, out2, out1, out1, m).item(), rel=1e-6)
    f1 = torch.rand(2, 4, 6, 6)
    assert feature_loss(f1, f1 + 1, m, torch.zeros(2)) == 0


def test_per_style_scale_names_styles_and_maps_samples():
    styles = [{"name": "a", "path": "a.png"}, {"name": "b", "path": "b.png"}]
    cfg = TrainConfig(styles=styles, temporal_weight=1.0, temporal_style_scale={"b": 4})
    assert cfg.style_scale(torch.tensor([1, 0, 1])).tolist() == [4.0, 1.0, 4.0]
    assert TrainConfig(styles=styles).style_scale(torch.tensor([0])) is None
    with pytest.raises(ConfigError, match="not one of the styles"):
        TrainConfig(styles=styles, temporal_style_scale={"c": 2})
    with pytest.raises(ConfigError, match=">= 0"):
        TrainConfig(styles=styles, temporal_style_scale={"a": -1})
    with pytest.raises(ConfigError, match="table"):
        cfg.override(["temporal_style_scale=3"])
    assert cfg.override(["temporal_style_scale={a = 2}"]).temporal_style_scale == {"a": 2.0}
