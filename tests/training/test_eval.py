"""`stylebox eval` on the tiny exported model, tiny photos and a random VGG file."""

from __future__ import annotations

import csv
import math
import shutil
from pathlib import Path

import pytest
from PIL import Image

from stylebox.service.backends import openvino_installed
from tests.conftest import TINY_TRAIN_LAYERS, make_train_data

TILE, SIZE = 32, 40


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Config naming `candy` (stripes); `mosaic` comes by --style-image, `udnie` by dir."""
    import json

    root = make_train_data(tmp_path_factory.mktemp("eval"))
    lines = [f"{k} = {json.dumps(v)}" for k, v in {
        "data_root": str(root), "vgg_weights": "vgg.pth", "style_size": 48,
        **TINY_TRAIN_LAYERS}.items()]
    lines += ["[[styles]]", 'name = "candy"', 'path = "styles/stripes.png"']
    (root / "eval.toml").write_text("\n".join(lines) + "\n")
    (root / "more").mkdir()
    shutil.copy(root / "styles/stripes.png", root / "more/udnie.png")
    return root


def _run(data: Path, tiny_onnx: Path, out: Path, *extra: str) -> int:
    from stylebox.cli import main

    return main(["eval", "--model", str(tiny_onnx), "--photos", str(data / "photos"),
                 "--config", str(data / "eval.toml"), "--out", str(out), "--size", str(SIZE),
                 "--tile", str(TILE), "--styles-dir", str(data / "more"), "--style-image",
                 f"mosaic={data / 'styles/checker.png'}", *extra])


def _csv(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_eval_writes_table_csv_gallery_and_blend(data, tiny_onnx, tmp_path, capsys):
    out = tmp_path / "ev"
    assert _run(data, tiny_onnx, out, "--blend", "candy,udnie", "--blend-steps", "4") == 0
    assert "| candy | Candy |" in capsys.readouterr().out
    rows = _csv(out / "eval.csv")
    assert [r["style"] for r in rows] == ["candy", "mosaic", "udnie"]
    for r in rows:
        vals = [float(r[k]) for k in ("style_loss", "content_loss", "photo_style_loss")]
        assert all(math.isfinite(v) and v > 0 for v in vals), r
        assert math.isclose(float(r["ratio"]), vals[0] / vals[2], rel_tol=1e-4)
    per_photo = _csv(out / "eval_per_photo.csv")
    assert len(per_photo) == 7 * 3  # 7 photos x 3 styles
    for r in rows:  # the table is the mean of the per-photo rows
        mine = [float(p["style_loss"]) for p in per_photo if p["style"] == r["style"]]
        assert math.isclose(sum(mine) / 7, float(r["style_loss"]), rel_tol=1e-4)
    md = (out / "eval.md").read_text()
    assert "| **mean** |" in md and "![gallery](gallery.jpg)" in md
    assert "![blend](blend-candy-udnie.jpg)" in md
    with Image.open(out / "gallery.jpg") as im:  # header row + 7 photos; photo + 3 styles
        assert im.size == (4 * TILE, 8 * TILE + 18)
    with Image.open(out / "blend-candy-udnie.jpg") as im:
        assert im.size == (4 * TILE, TILE + 18)


def test_style_images_are_matched_by_name_and_eval_is_deterministic(data, tiny_onnx, tmp_path):
    assert _run(data, tiny_onnx, tmp_path / "a") == 0
    assert _run(data, tiny_onnx, tmp_path / "b") == 0
    assert (tmp_path / "a/eval.csv").read_bytes() == (tmp_path / "b/eval.csv").read_bytes()
    rows = {r["style"]: r for r in _csv(tmp_path / "a/eval.csv")}
    # candy (config) and udnie (--styles-dir) both use the stripes image; mosaic the checker.
    assert rows["candy"]["photo_style_loss"] == rows["udnie"]["photo_style_loss"]
    assert rows["candy"]["photo_style_loss"] != rows["mosaic"]["photo_style_loss"]
    # The same target again, through --style-image: candy's numbers do not move.
    assert _run(data, tiny_onnx, tmp_path / "c", "--style-image",
                f"candy={data / 'more/udnie.png'}") == 0
    again = {r["style"]: r for r in _csv(tmp_path / "c/eval.csv")}
    assert again["candy"]["style_loss"] == rows["candy"]["style_loss"]


def test_styles_scores_only_those_with_the_same_numbers(data, tiny_onnx, tmp_path):
    """`--styles udnie,candy`: two rows, in the model's order, equal to the full run's."""
    assert _run(data, tiny_onnx, tmp_path / "all") == 0
    assert _run(data, tiny_onnx, tmp_path / "two", "--styles", "udnie,candy") == 0
    full = {r["style"]: r for r in _csv(tmp_path / "all/eval.csv")}
    two = _csv(tmp_path / "two/eval.csv")
    assert [r["style"] for r in two] == ["candy", "udnie"]
    assert all(r == full[r["style"]] for r in two)
    with Image.open(tmp_path / "two/gallery.jpg") as im:  # photo + 2 styles
        assert im.size[0] == 3 * TILE


@pytest.mark.parametrize("extra, message", [
    (["--styles", "candy,nope"], "--styles nope: not in the model"),
    (["--blend", "candy,nope"], "blend style 'nope' is not in the model"),
    (["--blend", "candy"], "--blend wants two style names"),
    (["--style-image", "broken"], "--style-image wants NAME=PATH"),
])
def test_eval_bad_arguments_exit_2_with_one_line(data, tiny_onnx, tmp_path, capsys, extra,
                                                 message):
    assert _run(data, tiny_onnx, tmp_path / "x", *extra) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_eval_without_a_style_image_or_model_is_a_clear_error(data, tiny_onnx, tmp_path, capsys):
    from stylebox.cli import main

    base = ["eval", "--photos", str(data / "photos"), "--config", str(data / "eval.toml"),
            "--out", str(tmp_path / "x")]
    assert main([*base, "--model", str(tiny_onnx)]) == 2  # mosaic, udnie: no image anywhere
    err = capsys.readouterr().err
    assert "no style image for mosaic (looked for " in err and "; udnie (looked for " in err
    assert str(data / "styles" / "udnie.*") in err  # the data root's styles/ folder
    assert main([*base, "--model", str(tmp_path / "none.onnx")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.skipif(not openvino_installed(), reason="openvino is not installed")
def test_eval_on_openvino_scores_like_onnxruntime(data, tiny_onnx, tmp_path):
    """`--engine`: the losses of the same file on another runtime agree within 1 %."""
    assert _run(data, tiny_onnx, tmp_path / "ort", "--engine", "onnxruntime") == 0
    assert _run(data, tiny_onnx, tmp_path / "ov", "--engine", "openvino",
                "--precision", "f32") == 0
    assert "run on onnxruntime f32" in (tmp_path / "ort/eval.md").read_text()
    assert "run on openvino f32" in (tmp_path / "ov/eval.md").read_text()
    ort_rows, ov_rows = _csv(tmp_path / "ort/eval.csv"), _csv(tmp_path / "ov/eval.csv")
    for a, b in zip(ort_rows, ov_rows, strict=True):
        for key in ("style_loss", "content_loss"):
            assert math.isclose(float(a[key]), float(b[key]), rel_tol=0.01), (key, a, b)


@pytest.fixture(scope="module")
def edited_onnx(tmp_path_factory) -> Path:
    """The tiny model with the history `add-style` and `rename-style` leave in a card: mosaic
    added from checker.png; udnie added as "painting" from stripes.png, then renamed."""
    from stylebox.model.export import export_onnx
    from tests.conftest import make_tiny_card, make_tiny_generator

    card = make_tiny_card()
    card.training["style_edits"] = [
        {"op": "add", "name": "mosaic", "image": "checker.png", "steps": 2},
        {"op": "add", "name": "painting", "image": "stripes.png", "steps": 2},
        {"op": "rename", "name": "painting", "new_name": "udnie", "title": "Udnie"},
    ]
    path = tmp_path_factory.mktemp("edited") / "edited.onnx"
    export_onnx(make_tiny_generator(), card, path, export_size=32)
    return path


def test_added_styles_are_found_from_the_card_in_the_data_roots_styles(data, edited_onnx,
                                                                        tmp_path):
    """No --style-image, no --styles-dir: candy from the config, mosaic and udnie from the
    painting files add-style recorded, looked up in the data root's styles/ folder."""
    from stylebox.cli import main

    out = tmp_path / "ev"
    assert main(["eval", "--model", str(edited_onnx), "--photos", str(data / "photos"),
                 "--config", str(data / "eval.toml"), "--out", str(out), "--size", str(SIZE),
                 "--tile", str(TILE), "--max-photos", "2"]) == 0
    rows = {r["style"]: r for r in _csv(out / "eval.csv")}
    assert rows["candy"]["photo_style_loss"] == rows["udnie"]["photo_style_loss"]  # stripes
    assert rows["mosaic"]["photo_style_loss"] != rows["candy"]["photo_style_loss"]  # checker


def test_style_images_from_the_card_and_the_styles_folder(data, tmp_path, monkeypatch):
    from stylebox.model.card import ModelCard
    from stylebox.model.edit import style_origins
    from stylebox.training.config import TrainConfig
    from stylebox.training.data import find_style_image

    card = ModelCard.from_dict({
        "name": "m", "version": "1", "alpha": 0.25,
        "styles": [{"name": n} for n in ("candy", "zebra", "kept", "udnie")],
        "training": {"style_edits": [
            {"op": "add", "name": "gone", "image": "gone.png"},
            {"op": "add", "name": "kept", "image": "kept.jpg"},
            {"op": "rename", "name": "candy", "new_name": "zebra"},  # a jointly trained style
            {"op": "remove", "name": "gone"},
            {"op": "rename", "name": "old", "new_name": "candy"},
        ]}})
    origins = style_origins(card)
    assert origins == {"candy": ("old", ""), "zebra": ("candy", ""), "kept": ("kept", "kept.jpg"),
                       "udnie": ("udnie", "")}
    cfg = TrainConfig.load(data / "eval.toml")
    # zebra was "candy" when trained: the config's candy entry is its painting
    assert find_style_image("zebra", cfg, origins["zebra"])[0] == data / "styles/stripes.png"
    # kept.jpg: not in the styles folders, but in the current folder
    monkeypatch.chdir(tmp_path)
    assert find_style_image("kept", cfg, origins["kept"])[0] is None
    (tmp_path / "kept.jpg").write_bytes((data / "styles/checker.png").read_bytes())
    assert find_style_image("kept", cfg, origins["kept"])[0] == Path("kept.jpg")
    # NAME.* in --styles-dir first, then in the data root's styles/ folder
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir/udnie.png").write_bytes(b"x")
    found, tried = find_style_image("udnie", cfg, None, tmp_path / "dir")
    assert found == tmp_path / "dir/udnie.png"
    found, tried = find_style_image("udnie", cfg)
    assert found is None and tried == [str(data / "styles" / "udnie.*")]


def test_blend_styles_need_not_be_scored(data, tiny_onnx, tmp_path):
    """`--styles candy --blend candy,mosaic`: the strip needs no style image for mosaic."""
    assert _run(data, tiny_onnx, tmp_path / "b", "--styles", "candy", "--blend",
                "candy,mosaic", "--max-photos", "1") == 0
    assert (tmp_path / "b/blend-candy-mosaic.jpg").is_file()
    assert [r["style"] for r in _csv(tmp_path / "b/eval.csv")] == ["candy"]


def test_missing_config_and_data_root_name_the_flag(data, tiny_onnx, tmp_path, capsys,
                                                    monkeypatch):
    """Run outside the checkout: the defaults are relative to the current folder, and the
    one line says so, with the absolute path tried and the flag that fixes it."""
    from stylebox.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STYLEBOX_DATA", raising=False)
    base = ["eval", "--model", str(tiny_onnx), "--photos", str(data / "photos"), "--out", "x"]
    assert main(base) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("stylebox eval: config file configs/default.toml not found, relative to the "
                   f"current folder: {tmp_path / 'configs/default.toml'}; pass --config FILE "
                   "(the stylebox checkout has configs/default.toml)")
    assert main([*base, "--config", str(data / "eval.toml"), "--data-root", "nowhere"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("stylebox eval: data root 'nowhere' not found, relative to the "
                          f"current folder: {tmp_path / 'nowhere'}; pass --data-root DIR")
    assert "\n" not in err
