"""`stylebox add-style`, `remove-style`, `rename-style` on a tiny CPU model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stylebox.model.card import CardError, StyleInfo
from stylebox.model.checkpoint import build_generator, load_checkpoint, save_checkpoint
from stylebox.model.edit import append_style, is_style_table, remove_style, rename_style
from stylebox.model.network import one_hot
from stylebox.training.config import TrainConfig
from tests.conftest import encode, make_client, make_train_data, noise, pixels, write_train_config


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """Data (photos, two styles, fake VGG) and a 2-style checkpoint with distinct γ/β rows."""
    root = make_train_data(tmp_path_factory.mktemp("data"))
    cfg = TrainConfig.load(write_train_config(root, log_every=1))
    card = cfg.card()
    torch.manual_seed(0)
    gen = build_generator(card).randomize_styles()
    save_checkpoint(root / "base.pt", gen, card, config=cfg.to_dict())
    # A "new painting": the checker style flipped, so its nearest known style is checker.
    checker = Image.open(root / "styles/checker.png")
    checker.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(root / "painting.png")
    return root


def _added(base: Path, tmp_path: Path, **kw):
    from stylebox.training.add_style import add_style

    kw = {"steps": 3, "preview_every": 2, "progress": False, **kw}
    summary = add_style(base / "base.pt", base / "painting.png", "flipped", tmp_path / "new.pt",
                        title="Flipped Checker", **kw)
    return summary, load_checkpoint(tmp_path / "new.pt")


def test_only_the_new_row_changes_and_the_card_grows(base, tmp_path):
    summary, (gen, card, state) = _added(base, tmp_path)
    old_gen, old_card, _ = load_checkpoint(base / "base.pt")
    assert card.style_names == ["stripes", "checker", "flipped"]
    assert card.styles[-1].title == "Flipped Checker" and card.n_styles == 3
    assert summary["init_from"] == "checker"
    assert summary["gram_distances"]["checker"] < summary["gram_distances"]["stripes"]
    old = dict(old_gen.named_parameters())
    n_tables = 0
    for name, p in gen.named_parameters():
        if is_style_table(name):
            n_tables += 1
            assert p.shape[0] == 3
            assert torch.equal(p[:2], old[name]), name  # existing rows bit-identical
            assert not torch.equal(p[2], old[name][1]), name  # new row trained off its init
        else:
            assert torch.equal(p, old[name]), name  # every conv weight and bias bit-identical
    assert n_tables == 2 * 7  # n_residual=1: 3 down + 2 res + 2 up CIN layers, γ and β each
    edit = card.training["style_edits"][-1]
    assert edit["op"] == "add" and edit["steps"] == 3 and edit["init_from"] == "checker"
    assert [s["name"] for s in state["config"]["styles"]] == ["stripes", "checker", "flipped"]
    assert [Path(p).name for p in summary["previews"]] == [
        "flipped-000000.jpg", "flipped-000002.jpg", "flipped-000003.jpg"]
    with Image.open(summary["previews"][0]) as im:
        assert im.width == 2 * 64 and im.height <= 64  # photo | result, long side 2 * crop


def test_existing_styles_render_exactly_as_before(base, tmp_path):
    summary, (gen, _, _) = _added(base, tmp_path, steps=1, preview_every=0, init="stripes")
    assert summary["init_from"] == "stripes" and summary["gram_distances"] == {}
    old_gen, _, _ = load_checkpoint(base / "base.pt")
    x = torch.rand(1, 3, 24, 28)
    with torch.no_grad():
        for i in range(2):
            assert torch.allclose(gen(x, one_hot(i, 3)), old_gen(x, one_hot(i, 2)), atol=1e-6)


def test_training_the_row_lowers_the_new_styles_loss(base, tmp_path):
    summary, _ = _added(base, tmp_path, steps=30, preview_every=0, lr=5e-2)
    curve = summary["curve"]
    first = sum(r["style"] for r in curve[:5]) / 5
    last = sum(r["style"] for r in curve[-5:]) / 5
    assert len(curve) == 30 and last < 0.8 * first, (first, last)


def test_a_stopped_run_resumes_to_the_same_row(base, tmp_path, monkeypatch):
    """Stopped at step 4 of 8 (the time limit), the same call continues from the partial
    file and ends bit-identical to an uninterrupted run; the curve carries seconds."""
    import stylebox.training.add_style as mod

    whole, (gen_whole, _, _) = _added(base, tmp_path / "whole", steps=8, preview_every=0)
    ticks = iter(range(0, 10_000, 30))  # each monotonic() call: 30 s later
    with monkeypatch.context() as m:
        m.setattr(mod.time, "monotonic", lambda: float(next(ticks)))
        first, _ = _added(base, tmp_path / "split", steps=8, preview_every=0,
                          time_limit_min=1.5)
    partial = tmp_path / "split" / "new.partial.pt"
    assert first["stopped"] == "time_limit" and 0 < first["steps"] < 8 and partial.is_file()
    second, (gen_split, card, _) = _added(base, tmp_path / "split", steps=8, preview_every=0)
    assert second["stopped"] == "done" and second["steps"] == 8 and not partial.exists()
    for (k, a), (_, b) in zip(gen_whole.named_parameters(), gen_split.named_parameters(),
                              strict=True):
        assert torch.allclose(a, b, atol=1e-6), k
    assert [r["step"] for r in second["curve"]] == list(range(1, 9))  # log_every=1
    assert all(r["seconds"] >= 0 for r in second["curve"])
    rows = (tmp_path / "split" / "new-curve.csv").read_text().splitlines()
    assert rows[0] == "step,seconds,loss,content,style" and len(rows) == 9
    assert card.training["style_edits"][-1]["steps"] == 8


def test_append_style_initialises_from_a_row_or_the_mean(base):
    gen, card, _ = load_checkpoint(base / "base.pt")
    g1, c1 = append_style(gen, card, StyleInfo("new"), init_from=0)
    g2, _ = append_style(gen, card, StyleInfo("new"), init_from=None)
    assert c1.style_names == ["stripes", "checker", "new"] and card.n_styles == 2
    for (name, p), (_, q), (_, old) in zip(g1.named_parameters(), g2.named_parameters(),
                                           gen.named_parameters(), strict=True):
        if is_style_table(name):
            assert torch.equal(p[2], old[0]) and torch.allclose(q[2], old.mean(0))
    with pytest.raises(CardError, match="already has"):
        append_style(gen, card, StyleInfo("checker"))


def test_remove_style_drops_its_row_and_keeps_the_others(base):
    gen, card, _ = load_checkpoint(base / "base.pt")
    g, c = remove_style(gen, card, "stripes")
    assert c.style_names == ["checker"] and c.training["style_edits"][-1]["op"] == "remove"
    old = dict(gen.named_parameters())
    for name, p in g.named_parameters():
        assert torch.equal(p, old[name][1:2] if is_style_table(name) else old[name]), name
    with pytest.raises(CardError, match="only style"):
        remove_style(g, c, "checker")
    with pytest.raises(CardError, match="no style named 'nope'"):
        remove_style(gen, card, "nope")


def test_rename_style_edits_only_the_card(base):
    _, card, _ = load_checkpoint(base / "base.pt")
    c = rename_style(card, "stripes", "zebra")
    # "Stripes" was derived from the name, so it follows the rename; a real title stays.
    assert c.style_names == ["zebra", "checker"] and c.styles[0].title == "Zebra"
    assert rename_style(c2 := rename_style(c, "zebra", title="Z!"), "zebra", "okapi").styles[
        0].title == "Z!" and c2.styles[0].title == "Z!"
    c2 = rename_style(c, "zebra", title="Zebra Stripes", source="test")
    assert (c2.styles[0].name, c2.styles[0].title, c2.styles[0].source) == (
        "zebra", "Zebra Stripes", "test")
    assert card.style_names == ["stripes", "checker"]  # the input card is left alone
    with pytest.raises(CardError, match="already has"):
        rename_style(card, "stripes", "checker")
    with pytest.raises(CardError, match="lowercase"):
        rename_style(card, "stripes", "Bad Name")


def test_cli_add_export_serve_the_new_style(base, tmp_path, capsys):
    from stylebox.cli import main
    from stylebox.model.export import export_onnx
    from stylebox.service.backends.ort import OrtEngine

    out = tmp_path / "plus.pt"
    rc = main(["add-style", "--model", str(base / "base.pt"), "--name", "flipped", "--image",
               str(base / "painting.png"), "--out", str(out), "--steps", "2",
               "--preview-every", "1", "--no-progress"])
    text = capsys.readouterr().out
    assert rc == 0 and "3 styles" in text and "initialised from checker" in text
    assert len(list((tmp_path / "plus-previews").glob("flipped-*.jpg"))) == 3
    gen, card, _ = load_checkpoint(out)
    onnx_path = tmp_path / "plus.onnx"
    export_onnx(gen, card, onnx_path, export_size=32)
    engine = OrtEngine(onnx_path)
    client = make_client(engine, onnx_path)
    styles = client.get("/styles").json()["styles"]
    assert [s["name"] for s in styles] == ["stripes", "checker", "flipped"]
    assert styles[2]["index"] == 2
    rgb = noise(20, 30, seed=1)
    r = client.post("/stylize?style=flipped", files={"image": ("a.png", encode(rgb), "image/png")})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    got = pixels(r.content)
    assert got.shape == (20, 30, 3)
    assert np.array_equal(got, engine.stylize(rgb, np.array([0, 0, 1], np.float32)))


def test_cli_errors_are_one_line_and_exit_2(base, tmp_path, capsys):
    from stylebox.cli import main

    common = ["--model", str(base / "base.pt"), "--out", str(tmp_path / "x.pt"), "--steps", "1",
              "--no-progress"]
    assert main(["add-style", *common, "--name", "checker", "--image",
                 str(base / "painting.png")]) == 2
    assert "already has a style named 'checker'" in capsys.readouterr().err
    assert main(["add-style", *common, "--name", "x", "--image", str(tmp_path / "no.jpg")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["add-style", *common, "--name", "x", "--image", str(base / "painting.png"),
                 "--init", "bogus"]) == 2
    assert "--init must be" in capsys.readouterr().err
    assert not (tmp_path / "x.pt").exists()


def test_cli_remove_and_rename(base, tmp_path, capsys):
    from stylebox.cli import main

    src, out = str(base / "base.pt"), tmp_path / "r.pt"
    assert main(["rename-style", src, "--name", "stripes", "--new-name", "zebra", "--title",
                 "Zebra", "-o", str(out)]) == 0
    gen, card, state = load_checkpoint(out)
    assert card.style_names == ["zebra", "checker"] and card.styles[0].title == "Zebra"
    assert state["config"]["styles"][0]["name"] == "zebra"
    assert main(["remove-style", str(out), "--name", "checker", "-o", str(out)]) == 0
    gen, card, state = load_checkpoint(out)
    assert card.style_names == ["zebra"] and gen.cfg.n_styles == 1
    assert [s["name"] for s in state["config"]["styles"]] == ["zebra"]
    capsys.readouterr()
    assert main(["remove-style", str(out), "--name", "zebra", "-o", str(out)]) == 2
    assert "only style" in capsys.readouterr().err
    (tmp_path / "m.onnx").write_bytes(b"\x08onnx-ish bytes")
    assert main(["rename-style", str(tmp_path / "m.onnx"), "--name", "a", "--title", "B",
                 "-o", str(out)]) == 2
    assert "not a stylebox checkpoint" in capsys.readouterr().err


def test_a_missing_data_root_names_itself_and_the_flag(base, tmp_path, capsys, monkeypatch):
    """The checkpoint records the data root of the machine that trained it; when that folder
    is not here the one line names it (absolute too) and --data-root / STYLEBOX_DATA, instead
    of blaming the VGG file. STYLEBOX_DATA and --data-root replace the recorded folder."""
    from stylebox.cli import main

    gen, card, state = load_checkpoint(base / "base.pt")
    config = {**state["config"], "data_root": "../elsewhere/data"}
    save_checkpoint(tmp_path / "moved.pt", gen, card, config=config)
    outside = tmp_path / "outside.png"
    outside.write_bytes((base / "painting.png").read_bytes())
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STYLEBOX_DATA", raising=False)
    argv = ["add-style", "--model", "moved.pt", "--name", "x", "--image", "outside.png",
            "--out", "x.pt", "--steps", "1", "--no-progress", "--preview-every", "0"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("stylebox add-style: data root '../elsewhere/data' (recorded in the "
                   "checkpoint's training config) not found, relative to the current folder: "
                   f"{(tmp_path / '../elsewhere/data').resolve()}; pass --data-root DIR (the "
                   "folder holding vgg/, styles/ and train-photos/) or set STYLEBOX_DATA")
    monkeypatch.setenv("STYLEBOX_DATA", str(base))
    assert main(argv) == 0
    monkeypatch.setenv("STYLEBOX_DATA", "nowhere")
    assert main([*argv, "--data-root", str(base), "--no-resume"]) == 0
    _, new_card, new_state = load_checkpoint(tmp_path / "x.pt")
    # The painting lies outside the data root: recorded as an absolute path; its file name
    # goes in the card (which `stylebox eval` reads to find it again).
    assert new_state["config"]["styles"][-1]["path"] == str(outside.resolve())
    assert new_card.training["style_edits"][-1]["image"] == "outside.png"


def test_a_painting_inside_the_data_root_is_recorded_relative_to_it(base, tmp_path):
    """As the config's own styles are: the checkpoint then works with the same data folder
    elsewhere."""
    from stylebox.training.add_style import add_style

    inside = base / "styles/painting-inside.png"
    inside.write_bytes((base / "painting.png").read_bytes())
    try:
        add_style(base / "base.pt", inside, "flipped", tmp_path / "in.pt", steps=1,
                  preview_every=0, progress=False)
    finally:
        inside.unlink()
    state = load_checkpoint(tmp_path / "in.pt")[2]
    assert state["config"]["styles"][-1]["path"] == "styles/painting-inside.png"

