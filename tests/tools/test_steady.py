"""`stylebox steady-frontier`: eval + flicker per model, one row each, reused when unchanged."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import pytest

from tests.conftest import TINY_TRAIN_LAYERS, make_train_data


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """A config whose joint styles are candy and mosaic; udnie (the tiny model's third)
    is found by name in the data root's styles/, as an added style's painting is."""
    root = make_train_data(tmp_path_factory.mktemp("steady"))
    lines = [f"{k} = {json.dumps(v)}" for k, v in {
        "data_root": str(root), "vgg_weights": "vgg.pth", "style_size": 48,
        **TINY_TRAIN_LAYERS}.items()]
    for name, file in (("candy", "stripes.png"), ("mosaic", "checker.png")):
        lines += ["[[styles]]", f'name = "{name}"', f'path = "styles/{file}"']
    (root / "steady.toml").write_text("\n".join(lines) + "\n")
    shutil.copy(root / "styles/stripes.png", root / "styles/udnie.png")
    return root


def test_frontier_rows_table_plot_and_reuse(data, tiny_onnx, tmp_path, monkeypatch, capsys):
    from stylebox import steady
    from stylebox.cli import main

    other = tmp_path / "other.onnx"
    shutil.copy(tiny_onnx, other)
    report = tmp_path / "flicker.md"
    report.write_text("# Flicker\n\nprose kept\n")
    argv = ["steady-frontier", str(data / "photos"), "--config", str(data / "steady.toml"),
            "--model", f"a={tiny_onnx}", "--model", f"b={other}::stylebox train --how",
            "--csv", str(tmp_path / "f.csv"), "--figure", str(tmp_path / "f.png"),
            "--report", str(report), "--eval-photos", "2", "--flicker-photos", "1",
            "--size", "48", "--content-layer", "relu1_2"]
    assert main(argv) == 0
    with open(tmp_path / "f.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["name"] for r in rows] == ["a", "b"] and rows[1]["command"] == "stylebox train --how"
    for r in rows:
        vals = [float(r[k]) for k in ("style", "content", "added_style", "pan1", "zoom",
                                      "rotate", "noise", "noise_input")]
        assert all(math.isfinite(v) and v >= 0 for v in vals), r
        assert float(r["pan1"]) > 0 and float(r["noise_input"]) > 0
    assert rows[0]["style"] == rows[1]["style"]  # the same network measured twice
    assert (tmp_path / "f.png").stat().st_size > 1000
    text = report.read_text()
    assert "prose kept" in text and "<!-- steady-frontier:begin -->" in text
    assert "| b | " in text and "`stylebox train --how`" in text

    def fail(*a, **k):
        raise AssertionError("an unchanged model was measured again")

    monkeypatch.setattr(steady, "measure", fail)
    capsys.readouterr()
    assert main(argv) == 0  # both rows come from the CSV
    assert "| a | " in capsys.readouterr().out
    # A bare NAME keeps its row as measured even where the model file is gone; a bare NAME
    # the CSV lacks is refused.
    other.unlink()
    kept = ["b" if a.startswith("b=") else a for a in argv]
    assert main(kept) == 0
    with open(tmp_path / "f.csv") as f:
        again = list(csv.DictReader(f))
    assert again == rows
    kept[kept.index("b")] = "c"
    assert main(kept) != 0


def test_the_plot_names_the_frontier_the_baseline_and_the_shipped(tmp_path):
    """Only the rows worth finding are labelled: none beaten on both style and pan, the
    baseline, and files under models/; a far-off row is drawn on the edge."""
    from stylebox.steady import _frontier, plot

    def row(name, style, pan, model="runs/x.onnx"):
        return {"name": name, "model": model, "style": style, "content": 1.0, "pan1": pan}

    rows = [row("base", 0.50, 16.0, "models/classic.onnx"), row("a", 0.51, 6.0),
            row("b", 0.52, 7.0), row("c", 0.55, 5.0), row("d", 0.56, 5.5),
            row("far", 1.2, 3.0), row("shipped", 0.53, 6.5, "models/x.onnx")]
    assert {r["name"] for r in rows if id(r) in _frontier(rows)} == {"base", "a", "c", "far"}
    plot(rows, tmp_path / "f.png", rows[0])
    assert (tmp_path / "f.png").stat().st_size > 10_000


def test_labels_in_a_crowd_cover_no_dot_and_no_other_label():
    """Six points closer together than a label is long: every label stays inside the panel,
    covers no other label and no dot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.text import Text
    from matplotlib.transforms import Bbox

    from stylebox.steady import _place_labels

    fig, ax = plt.subplots(figsize=(5, 3), dpi=110)
    pts = [(0.50 + 0.002 * k, 6.0 + 0.03 * (k % 3)) for k in range(6)]
    ax.scatter(*zip(*pts, strict=True), s=36)
    ax.set_xlim(0.45, 0.60)
    ax.set_ylim(3, 9)
    _place_labels(fig, ax, [(f"steady-run-{k}", p, False) for k, p in enumerate(pts)])
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    boxes = [Text.get_window_extent(t, r) for t in ax.texts]  # the words, not the lines
    assert len(boxes) == 6
    frame = ax.get_window_extent(r)
    dots = [Bbox.from_bounds(x - 4, y - 4, 8, 8) for x, y in ax.transData.transform(pts)]
    for i, b in enumerate(boxes):
        assert frame.contains(b.x0, b.y0) and frame.contains(b.x1, b.y1)
        assert not any(b.overlaps(o) for o in boxes[i + 1:] + dots)
    plt.close(fig)
