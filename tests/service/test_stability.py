"""service/stability.py: statistics carried across the frames of a stream."""

from __future__ import annotations

import numpy as np
import pytest

from stylebox.service.stability import StabilityConfig, StreamStylizer, thumbnail
from stylebox.service.tiling import TileConfig
from tests.conftest import noise


def _smooth(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A smooth photo-like frame (noise blurred by block averaging, then upscaled)."""
    small = noise(h // 8, w // 8, seed).astype(np.float32)
    return np.kron(small, np.ones((8, 8, 1), np.float32)).astype(np.uint8)


def test_first_frame_is_the_plain_stylization(engine):
    frame = _smooth(64, 96)
    w = engine.one_hot(1)
    s = StreamStylizer(engine)
    assert np.array_equal(s(frame, w), engine.stylize(frame, w))
    assert s.running is not None and s.running.shape == (engine.stats_size,)


def test_carried_statistics_are_used_and_averaged(engine):
    w = engine.one_hot(0)
    a, b = _smooth(64, 96, 0), _smooth(64, 96, 0)
    b[:, :48] = np.clip(b[:, :48].astype(int) + 12, 0, 255).astype(np.uint8)  # no scene cut
    s = StreamStylizer(engine, StabilityConfig(momentum=0.5, cut_level=50))
    s(a, w)
    first = s.running.copy()
    out_b = s(b, w)
    # Every layer of frame b normalised with half a's statistics, half its own ...
    expected, own = engine.stylize_stats(b, w, first, use=0.5)
    assert np.array_equal(out_b, expected)
    assert not np.array_equal(out_b, engine.stylize(b, w))
    assert not np.array_equal(out_b, engine.stylize_stats(b, w, first)[0])
    # ... and the running statistics are what the layers used: that blend.
    np.testing.assert_allclose(s.running, 0.5 * first + 0.5 * own, rtol=1e-5, atol=1e-6)
    assert s.cuts == 0


def test_scene_cut_size_and_style_changes_start_afresh(engine):
    s = StreamStylizer(engine, StabilityConfig(momentum=0.9, cut_level=10))
    w0, w1 = engine.one_hot(0), engine.one_hot(1)
    s(_smooth(64, 96, 0), w0)
    other = 255 - _smooth(64, 96, 0)  # a different picture: far over the cut level
    assert np.array_equal(s(other, w0), engine.stylize(other, w0))
    assert s.cuts == 1
    bigger = _smooth(72, 96, 3)
    assert np.array_equal(s(bigger, w0), engine.stylize(bigger, w0))  # new size
    assert np.array_equal(s(bigger, w1), engine.stylize(bigger, w1))  # new style
    assert s.cuts == 1  # neither counts as a cut


def test_a_still_noisy_scene_settles_instead_of_drifting(engine):
    """The running statistics converge on a still scene whatever the momentum: the blend
    inside the pass has the frame's own statistics as its fixed point."""
    w = engine.one_hot(0)
    base = _smooth(64, 96, 7).astype(np.int16)
    rng = np.random.default_rng(0)
    for momentum in (0.5, 0.9):
        s = StreamStylizer(engine, StabilityConfig(momentum=momentum))
        frames = [np.clip(base + rng.normal(0, 2, base.shape), 0, 255).astype(np.uint8)
                  for _ in range(12)]
        outs = [s(f, w).astype(np.int16) for f in frames]
        plain = [engine.stylize(f, w).astype(np.int16) for f in frames]
        carried = np.mean([np.abs(a - b).mean() for a, b in zip(outs[:-1], outs[1:], strict=True)])
        alone = np.mean([np.abs(a - b).mean() for a, b in zip(plain[:-1], plain[1:], strict=True)])
        assert carried <= alone * 1.05, (momentum, carried, alone)


def test_momentum_zero_is_frame_by_frame(engine):
    s = StreamStylizer(engine, StabilityConfig(momentum=0))
    w = engine.one_hot(2)
    for seed in range(3):
        f = _smooth(40, 48, seed)
        assert np.array_equal(s(f, w), engine.stylize(f, w))


def test_oversized_frames_run_in_tiles_with_pooled_statistics(engine):
    """Above the inference budget every tile uses the running statistics; the frame's own
    statistics are pooled from its tiles (close to those of one whole pass)."""
    frame = _smooth(96, 128, 5)
    w = engine.one_hot(0)
    tiling = TileConfig(tile_size=160, margin=0, stats_pixels=96 * 128)  # margin: the radius
    s = StreamStylizer(engine, StabilityConfig(momentum=0.5), max_inference_pixels=48 * 64,
                       tiling=tiling)
    out = s(frame, w)
    assert out.shape == frame.shape
    whole, own = engine.stylize_stats(frame, w)
    # The first frame's statistics come from the (here full-size) statistics pass, so the
    # tiles with enough margin reproduce the whole-image pass closely.
    assert np.abs(out.astype(int) - whole.astype(int)).mean() < 2.0
    np.testing.assert_allclose(s.running, own, rtol=0.05, atol=0.05)


def test_thumbnail_and_config_bounds():
    t = thumbnail(np.full((50, 70, 3), 200, np.uint8))
    assert t.shape == (32, 32) and np.allclose(t, 200, atol=0.01)
    with pytest.raises(ValueError):
        StabilityConfig(momentum=1.0)
    with pytest.raises(ValueError):
        StabilityConfig(cut_level=0)
