"""`stylebox optimize` (training/optimize.py) and `stylebox eval --ceiling` on a tiny CPU model,
tiny photos and a random VGG file (tests/conftest.py)."""

from __future__ import annotations

import csv
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stylebox.model.card import StyleInfo
from stylebox.model.checkpoint import build_generator, save_checkpoint
from stylebox.training.config import TrainConfig
from stylebox.training.optimize import (
    OptimizeCancelled,
    OptimizeError,
    OptimizeProgress,
    OptimizeSettings,
    optimize_photo,
)
from tests.conftest import TINY_TRAIN_LAYERS, make_train_data, write_train_config


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Tiny data and a 3-style checkpoint: stripes and checker from the config, `flipped`
    added later (add-style's record in the card: only its painting's file name)."""
    root = make_train_data(tmp_path_factory.mktemp("optimize"))
    cfg = TrainConfig.load(write_train_config(root))
    card = cfg.card()
    card.styles.append(StyleInfo("flipped", "Flipped", "painting.png"))
    card.training["style_edits"] = [{"op": "add", "name": "flipped", "image": "painting.png"}]
    torch.manual_seed(0)
    gen = build_generator(card).randomize_styles()
    save_checkpoint(root / "tiny.pt", gen, card, config=cfg.to_dict())
    with Image.open(root / "styles/checker.png") as im:
        im.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(root / "styles/painting.png")
    (root / "broken.png").write_text("not an image")
    return root


def _photo(seed: int = 0, h: int = 36, w: int = 44) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 5, yy * 6, (xx + yy) * 3], -1) % 256
    return np.clip(base + rng.integers(0, 40, base.shape), 0, 255).astype(np.uint8)


def _run(data: Path, **kw):
    """fp32: bf16's first call on an AMX CPU spends seconds making its kernels."""
    kw = {"style": "checker", "iterations": 12, "time_limit_s": None,
          "settings": OptimizeSettings(amp="off"), **kw}
    return optimize_photo(_photo(), data / "tiny.pt", data_root=data, **kw)


def test_loss_goes_down_from_the_feed_forward_start(data):
    seen: list[OptimizeProgress] = []
    r = _run(data, progress=seen.append)
    assert r.image.dtype == np.uint8 and r.image.shape == (36, 44, 3)
    assert r.start_from == "checker" and r.stopped == "iterations" and r.iterations == 12
    # The weighted loss that is optimised (content 1, style 2 in the tiny config) drops.
    assert r.content_loss + 2 * r.style_loss < r.start_content + 2 * r.start_style
    assert r.style_loss < r.start_style
    assert [p.iteration for p in seen] == [5, 10, 12]
    assert all(p.iterations == 12 and p.eta_s >= 0 for p in seen)
    assert seen[-1].eta_s == 0 and seen[0].eta_s > 0
    preview = seen[0].image()  # the image at iteration 5, computed on request
    assert preview.dtype == np.uint8 and preview.shape == (36, 44, 3)


def test_iteration_budget_and_max_side(data):
    r = _run(data, iterations=2, max_side=22)
    assert r.iterations == 2 and r.stopped == "iterations"
    assert r.image.shape == (18, 22, 3)  # long side 44 -> 22, never upscaled


def test_time_budget_stops_it(data):
    def slow() -> bool:  # every iteration takes >= 0.3 s
        time.sleep(0.3)
        return False

    t0 = time.monotonic()
    seen: list[OptimizeProgress] = []
    r = _run(data, iterations=10_000, time_limit_s=2.0, cancelled=slow, progress=seen.append)
    assert r.stopped == "time" and 1 <= r.iterations < 7
    assert seen[-1].iteration == r.iterations  # reported once more where the time ran out
    # It stops before an iteration that would end past the limit (the slack: a loaded machine).
    assert r.seconds < 2.0 + 1.0 and time.monotonic() - t0 < 3.5


def test_cancel_raises(data):
    calls = []

    def cancelled() -> bool:
        calls.append(1)
        return len(calls) > 3

    with pytest.raises(OptimizeCancelled, match="after 3 iterations"):
        _run(data, cancelled=cancelled)


def test_a_painting_starts_from_the_nearest_style_and_added_styles_are_found(data):
    r = _run(data, style=None, painting=data / "styles/painting.png", iterations=2)
    assert r.style == "painting.png" and r.start_from == "flipped"  # its own painting, nearest
    r = _run(data, style="flipped", iterations=2)  # found by the file add-style recorded
    assert r.start_from == "flipped" and r.iterations == 2


@pytest.mark.parametrize("kw, message", [
    ({"style": "nope"}, "style 'nope' is not in the checkpoint (stripes, checker, flipped)"),
    ({"style": None}, "give exactly one of a style name"),
    ({"painting": "x.png"}, "give exactly one of a style name"),
    ({"style": None, "painting": "missing.png"}, "painting 'missing.png' does not exist"),
    ({"style": None, "painting": "BROKEN"}, "cannot be read as an image"),
    ({"iterations": 0}, "iterations must be >= 1"),
])
def test_bad_input_is_a_user_error(data, kw, message):
    if kw.get("painting") == "BROKEN":
        kw["painting"] = data / "broken.png"
    with pytest.raises(OptimizeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _run(data, **kw)


def test_a_style_without_its_painting_says_where_it_looked(data, tmp_path):
    moved = tmp_path / "root"
    shutil.copytree(data, moved)
    (moved / "styles/painting.png").unlink()
    with pytest.raises(OptimizeError, match="no painting found for style 'flipped'"):
        optimize_photo(_photo(), moved / "tiny.pt", style="flipped", data_root=moved,
                       iterations=1)


def test_cli_writes_the_image_and_prints_the_losses(data, tmp_path, capsys):
    from stylebox.cli import main

    Image.fromarray(_photo(1, 40, 30)).save(tmp_path / "photo.png")
    out = tmp_path / "out/styled.png"
    assert main(["optimize", str(tmp_path / "photo.png"), "--style", "stripes", "-o", str(out),
                 "--checkpoint", str(data / "tiny.pt"), "--data-root", str(data),
                 "--iterations", "3", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "feed-forward (stripes): style " in text and "3 iterations" in text
    with Image.open(out) as im:
        assert im.size == (30, 40)
    assert main(["optimize", str(tmp_path / "photo.png"), "--style", "nope", "-o", str(out),
                 "--checkpoint", str(data / "tiny.pt"), "--data-root", str(data)]) == 2
    assert "stylebox optimize: style 'nope' is not in the checkpoint" in capsys.readouterr().err
    assert main(["optimize", str(tmp_path / "none.png"), "--style", "stripes", "-o", str(out),
                 "--checkpoint", str(data / "tiny.pt")]) == 2
    assert "photo" in capsys.readouterr().err
    assert main(["optimize", str(data / "broken.png"), "--style", "stripes", "-o", str(out),
                 "--checkpoint", str(data / "tiny.pt")]) == 2
    assert "cannot be read as an image" in capsys.readouterr().err


def test_eval_ceiling_column(data, tiny_onnx, tmp_path, capsys):
    """`stylebox eval --ceiling 1`: eval_ceiling.csv and a Ceiling table in eval.md, below
    tables that are the same as without it."""
    from stylebox.cli import main

    lines = [f"{k} = {json.dumps(v)}" for k, v in {
        "data_root": str(data), "vgg_weights": "vgg.pth", "style_size": 48,
        **TINY_TRAIN_LAYERS}.items()]
    lines += ["[[styles]]", 'name = "candy"', 'path = "styles/stripes.png"']
    (tmp_path / "eval.toml").write_text("\n".join(lines) + "\n")
    base = ["eval", "--model", str(tiny_onnx), "--photos", str(data / "photos"), "--config",
            str(tmp_path / "eval.toml"), "--size", "32", "--tile", "32", "--max-photos", "2",
            "--styles", "candy"]
    assert main([*base, "--out", str(tmp_path / "plain")]) == 0
    assert main([*base, "--out", str(tmp_path / "ceil"), "--ceiling", "1",
                 "--ceiling-iterations", "6"]) == 0
    assert "eval_ceiling.csv" in capsys.readouterr().out
    assert not (tmp_path / "plain/eval_ceiling.csv").exists()
    assert "Ceiling" not in (tmp_path / "plain/eval.md").read_text()
    plain, ceil = (tmp_path / "plain/eval.csv").read_bytes(), (tmp_path / "ceil/eval.csv")
    assert ceil.read_bytes() == plain  # the model's own scores do not move
    with open(tmp_path / "ceil/eval_ceiling.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["photo"], r["style"], r["iterations"]) for r in rows] == [("0", "candy", "6")]
    r = rows[0]
    with open(tmp_path / "plain/eval_per_photo.csv") as f:
        model = next(csv.DictReader(f))
    assert r["model_style_loss"] == model["style_loss"]
    assert float(r["ceiling_style_loss"]) < float(r["model_style_loss"])
    md = (tmp_path / "ceil/eval.md").read_text()
    assert "## Ceiling" in md and "| candy | " in md.split("## Ceiling")[1]
