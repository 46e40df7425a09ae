"""`stylebox flicker`: the clips have the motion they claim, the warp and mask maths is exact,
and the command runs end to end on the tiny model with small frames."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stylebox.flicker import (
    MOTIONS,
    PAN,
    ROTATE_DEG,
    ZOOM,
    Warp,
    _affine_warp,
    clip_error,
    h264_round_trip,
    make_clips,
    pick_photos,
    warp_error,
)
from stylebox.report import write_between
from tests.conftest import TINY_TRAIN_LAYERS, make_train_data

SIZE = (64, 48)  # (W, H)


def _textured(w: int = 96, h: int = 80, seed: int = 0) -> Image.Image:
    """Noise: every pixel differs from its neighbours, so a wrong offset cannot measure 0."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def _smooth(w: int = 160, h: int = 120) -> Image.Image:
    """Low-frequency waves: bilinear resampling is nearly exact on them, a wrong warp is not."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    rgb = np.stack([128 + 100 * np.sin(xx / 9 + yy / 23), 128 + 100 * np.cos(yy / 11),
                    128 + 100 * np.sin((xx - yy) / 13)], -1)
    return Image.fromarray(rgb.round().astype(np.uint8))


def _box_blur(rgb: np.ndarray) -> np.ndarray:
    """3x3 mean with edge padding: shift-equivariant away from the border, not identity."""
    p = np.pad(rgb.astype(np.float32), ((1, 1), (1, 1), (0, 0)), mode="edge")
    h, w = rgb.shape[:2]
    return sum(p[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)) / 9


def test_integer_motion_measures_exactly_zero_for_equivariant_functions():
    clips = make_clips(_textured(), SIZE, 5, ["pan1", "pan2", "pan4", "object"], margin=2)
    for motion, clip in clips.items():
        assert clip_error(clip.frames, clip.warps) == 0.0, motion
        # A pointwise map and a local filter commute with the shift: still exactly 0 inside.
        assert clip_error([255 - f for f in clip.frames], clip.warps) == 0.0, motion
        if motion != "object":  # the blur mixes the patch's edge with what it moves over
            assert clip_error([_box_blur(f) for f in clip.frames], clip.warps) == 0.0, motion
    # ... and a function that is not equivariant (it shifts by one more pixel) does not.
    pan = clips["pan2"]
    moved = [np.roll(f, t, axis=1) for t, f in enumerate(pan.frames)]
    assert clip_error(moved, pan.warps) > 20


def test_pans_move_by_their_step_and_the_mask_leaves_out_what_came_in():
    margin = 3
    clips = make_clips(_textured(), SIZE, 4, list(PAN), margin=margin)
    w, h = SIZE
    for motion, v in PAN.items():
        clip = clips[motion]
        for a, b in zip(clip.frames, clip.frames[1:], strict=False):
            assert a.shape == (h, w, 3)
            assert np.array_equal(b[:, :w - v], a[:, v:])  # content moves left by v
            assert not np.array_equal(b[:, :w - 1], a[:, 1:]) or v == 1
        mask = clip.warps[0].mask
        assert mask.sum() == (h - 2 * margin) * (w - 2 * margin - v)
        assert not mask[:, w - margin - v:].any() and not mask[:, :margin].any()


def test_the_patch_moves_over_a_still_background_and_disocclusions_are_masked():
    clip = make_clips(_textured(), SIZE, 4, ["object"], margin=0)["object"]
    a, b = clip.frames[0], clip.frames[1]
    changed = np.any(a != b, axis=-1)
    warp = clip.warps[0]
    # Everything that changed is either the patch now or what it uncovered (masked).
    src_y, src_x = warp.src
    moved = (src_y != np.mgrid[0:SIZE[1], 0:SIZE[0]][0]) | \
        (src_x != np.mgrid[0:SIZE[1], 0:SIZE[0]][1])
    assert changed.any() and np.all(moved | ~warp.mask | ~changed)
    uncovered = changed & ~moved
    assert uncovered.any() and not warp.mask[uncovered].any()
    assert warp.mask[moved].all()  # the patch itself counts: visible in both frames


@pytest.mark.parametrize("motion", ["zoom", "rotate"])
def test_zoom_and_rotation_have_the_stated_motion(motion):
    size = (192, 144)  # large enough that 1 % moves the corners by a pixel
    clip = make_clips(_smooth(320, 240), size, 4, [motion], margin=2)[motion]
    right = clip_error(clip.frames, clip.warps)
    if motion == "zoom":
        others = [np.eye(2), np.eye(2) * ZOOM]  # no motion; the opposite zoom
    else:
        a = math.radians(-ROTATE_DEG)  # the opposite direction
        others = [np.eye(2), np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])]
    wrong = [clip_error(clip.frames, [_affine_warp(*size, m, 2)] * len(clip.warps))
             for m in others]
    # The centre is the frame's centre: the right warp about a point half a pixel off is worse.
    w = clip.warps[0]
    wrong.append(clip_error(clip.frames, [Warp(w.src + 0.5, w.mask)] * len(clip.warps)))
    assert right < 1 and min(wrong) > 3 * right, (right, wrong)


def test_still_scene_noise_has_sigma_two_and_is_fresh_per_frame():
    clip = make_clips(_textured(200, 160), (160, 120), 3, ["noise"], margin=0)["noise"]
    d = clip.frames[1].astype(float) - clip.frames[0].astype(float)
    # Mid-grey noise photo: clipping is rare. Difference of two N(0, 2²): sd 2√2, E|d| 2.26.
    assert abs(d.std() - 2 * math.sqrt(2)) < 0.15
    assert abs(clip_error(clip.frames, clip.warps) - 2 * math.sqrt(2) * math.sqrt(2 / math.pi)
               ) < 0.15


def test_warp_error_is_in_grey_levels_averaged_over_channels():
    clip = make_clips(_textured(), SIZE, 2, ["pan1"], margin=0)["pan1"]
    a, b = clip.frames
    b = b.astype(np.int16)
    b[..., 0] += 6  # one channel off by 6 everywhere: 2 grey levels over R, G, B
    b = np.clip(b, 0, 255)
    off = np.abs(b[..., 0] - clip.frames[1][..., 0].astype(np.int16))
    expected = off[clip.warps[0].mask].mean() / 3
    assert warp_error(a, b.astype(np.uint8), clip.warps[0]) == pytest.approx(expected, abs=1e-5)


def test_small_photos_are_enlarged_to_fit_every_clip():
    clips = make_clips(_textured(40, 30), SIZE, 6, list(MOTIONS), margin=2)
    assert all(f.shape == (SIZE[1], SIZE[0], 3) for c in clips.values() for f in c.frames)
    assert clip_error(clips["pan4"].frames, clips["pan4"].warps) == 0.0


def test_h264_round_trip_keeps_frames_close_and_their_count():
    clip = make_clips(_smooth(), SIZE, 3, ["pan1"], margin=0)["pan1"]
    out = h264_round_trip(clip.frames)
    assert len(out) == 3 and out[0].shape == clip.frames[0].shape
    assert np.abs(out[0].astype(float) - clip.frames[0]).mean() < 4


def test_photos_are_spread_over_the_folder_and_sections_are_replaced(tmp_path):
    files = [Path(f"p{i}") for i in range(9)]
    assert pick_photos(files, 3) == [files[0], files[4], files[8]]
    assert pick_photos(files, 20) == files
    report = tmp_path / "r.md"
    report.write_text("# Mine\n\nprose before\n")
    write_between(report, "flicker:a", "one")  # as the command writes its --section
    write_between(report, "flicker:b", "two")
    write_between(report, "flicker:a", "three")
    text = report.read_text()
    assert text.startswith("# Mine\n\nprose before\n")
    assert "one" not in text and text.index("three") < text.index("two")
    assert text.count("<!-- flicker:a:begin -->") == 1


# -- the command -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("flicker-photos")
    _textured(90, 70, seed=1).save(folder / "a.png")
    _smooth(100, 72).save(folder / "b.jpg")
    return folder


def _csv(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_cli_writes_report_csv_figure_and_strip(photos, tiny_onnx, tmp_path, capsys):
    from stylebox.cli import main

    report = tmp_path / "docs/flicker.md"
    args = ["flicker", str(photos), "--model", str(tiny_onnx), "--size", "64x48",
            "--frames", "3", "--photos", "2", "--margin", "4", "--carry", "0.9",
            "--codec", "h264", "--no-vgg", "--engine", "onnxruntime", "--report", str(report),
            "--figure", str(tmp_path / "f.png"), "--strip", str(tmp_path / "s.jpg")]
    assert main(args) == 0
    out = capsys.readouterr().out
    rows = _csv(tmp_path / "docs/flicker-table.csv")
    assert len(rows) == 2 * len(MOTIONS) * 3 * 2 * 2  # photos x motions x styles x modes x codecs
    assert {r["photo"] for r in rows} == {"a.png", "b.jpg"}
    for r in rows:
        if r["motion"] in ("pan1", "pan2", "pan4", "object") and r["codec"] == "none":
            assert float(r["input"]) == 0.0
        per_pair = [float(v) for v in r["per_pair"].split()]
        assert r["pairs"] == "2" and len(per_pair) == 2
        assert float(r["output"]) == pytest.approx(np.mean(per_pair), abs=1e-3)
    text = report.read_text()
    assert "<!-- flicker:table:begin -->" in text and "| candy | carry 0.9 | h264 |" in text
    assert "| input frames |  | none | 0.00 | 0.00 | 0.00 |" in text
    assert "stylebox flicker " in text and "--carry 0.9" in text  # the command that made it
    assert "| candy | frame by frame | none |" in out
    with Image.open(tmp_path / "f.png") as im:
        assert im.width > 400
    with Image.open(tmp_path / "s.jpg") as im:
        assert im.size == (5 * 64, 3 * (48 + 16))  # 1-px pan per mode, 4-px pan

    # Frame by frame is deterministic: a second run with another section repeats its numbers.
    assert main(args[:12] + ["--styles", "udnie", "--motions", "pan1,noise", "--no-vgg",
                             "--engine", "onnxruntime",
                             "--report", str(report), "--section", "again"]) == 0
    again = _csv(tmp_path / "docs/flicker-again.csv")
    first = {(r["photo"], r["motion"], r["style"]): r["output"] for r in rows
             if r["carry"] == "0" and r["codec"] == "none"}
    assert len(again) == 2 * 2 and all(
        first[(r["photo"], r["motion"], "udnie")] == r["output"] for r in again)
    text = report.read_text()
    assert "<!-- flicker:table:begin -->" in text and "<!-- flicker:again:end -->" in text


def test_cli_scores_vgg_style_and_content_on_the_frames(photos, tiny_onnx, tmp_path):
    import json

    from stylebox.cli import main

    root = make_train_data(tmp_path / "data")
    lines = [f"{k} = {json.dumps(v)}" for k, v in {
        "data_root": str(root), "vgg_weights": "vgg.pth", "style_size": 48,
        **TINY_TRAIN_LAYERS}.items()]
    lines += ["[[styles]]", 'name = "candy"', 'path = "styles/stripes.png"']
    (root / "f.toml").write_text("\n".join(lines) + "\n")
    report = tmp_path / "r.md"
    assert main(["flicker", str(photos), "--model", str(tiny_onnx), "--size", "64x48",
                 "--frames", "2", "--photos", "1", "--margin", "4", "--styles", "candy",
                 "--motions", "pan1,noise", "--vgg-motions", "pan1,noise", "--carry", "0.5",
                 "--config", str(root / "f.toml"), "--report", str(report)]) == 0
    vgg = _csv(tmp_path / "r-table-vgg.csv")
    assert len(vgg) == 2 * 2  # motions x modes
    assert all(float(r["style_loss"]) > 0 and float(r["content_loss"]) >= 0 for r in vgg)
    assert "style loss" in report.read_text()


@pytest.mark.parametrize("extra, message", [
    (["--size", "10x10"], "--size must be at least 16x16"),
    (["--size", "big"], "--size wants WxH"),
    (["--frames", "1"], "--frames must be >= 2"),
    (["--styles", "nope"], "--styles nope: not one of candy, mosaic, udnie"),
    (["--motions", "pan3"], "--motions pan3: not one of"),
    (["--carry", "1.5"], "--carry momentum must be in [0, 1)"),
    (["--carry", "x"], "--carry wants momenta"),
    (["--report", "r.txt"], "--report wants a .md file"),
    (["--margin", "40"], "--margin must be in"),
    (["--frames", "40"], "move the patch out of a 64x48 frame"),
    (["--size", "65x48", "--codec", "h264"], "needs an even frame size, got 65x48"),
    (["--strip-style", "nope"], "--strip-style 'nope' is not among the styles run"),
])
def test_bad_arguments_exit_2_with_one_line(photos, tiny_onnx, tmp_path, capsys, extra,
                                           message):
    from stylebox.cli import main

    rc = main(["flicker", str(photos), "--model", str(tiny_onnx), "--size", "64x48",
               "--no-vgg", "--photos", "1", *extra])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert err.startswith("stylebox flicker: ") and message in err, err


def test_missing_photo_folder_and_model_are_one_line_errors(photos, tmp_path, capsys):
    from stylebox.cli import main

    assert main(["flicker", str(tmp_path / "none"), "--no-vgg"]) == 2
    assert "photo folder" in capsys.readouterr().err
    assert main(["flicker", str(photos), "--model", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "model file" in err


def test_frames_run_alone_or_with_carried_statistics(engine):
    from stylebox.flicker import stylize_clip

    clip = make_clips(_smooth(), SIZE, 3, ["pan1"], margin=0)["pan1"]
    w = engine.one_hot(1)
    alone = stylize_clip(engine, clip.frames, w, 0.0)
    assert all(np.array_equal(a, engine.stylize(f, w)) for a, f in zip(alone, clip.frames,
                                                                        strict=True))
    carried = stylize_clip(engine, clip.frames, w, 0.9)
    assert np.array_equal(carried[0], alone[0])  # the first frame has its own statistics
    stats = engine.stylize_stats(clip.frames[0], w)[1]  # ... which the second frame blends
    assert np.array_equal(carried[1], engine.stylize_stats(clip.frames[1], w, stats, use=0.9)[0])
    assert not np.array_equal(carried[1], alone[1])
