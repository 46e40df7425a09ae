"""`stylebox frontier` (stylebox/frontier.py): one table, a plot and a picture row for any
set of candidate models, with eval losses averaged over the styles they share."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from stylebox.errors import UserError
from stylebox.frontier import main
from stylebox.model.export import export_onnx
from stylebox.training.eval import CSV_FIELDS
from tests.conftest import TINY_STYLES, make_tiny_card, make_tiny_generator


def _eval_csv(folder, losses: dict[str, tuple[float, float]]) -> None:
    """What `stylebox eval` writes, for models whose evaluation is not what is tested."""
    folder.mkdir(parents=True)
    lines = [",".join(CSV_FIELDS)]
    lines += [f"{s},{s},{a},{b},3.0,0.1" for s, (a, b) in losses.items()]
    (folder / "eval.csv").write_text("\n".join(lines) + "\n")


def test_frontier_tables_times_plots_and_pictures_every_candidate(tiny_onnx, tmp_path, capsys):
    g = make_tiny_generator(resize="ends", separable=True)
    ends = tmp_path / "ends.onnx"
    export_onnx(g, make_tiny_card(generator=g), ends, export_size=32)
    names = [s["name"] for s in TINY_STYLES]
    _eval_csv(tmp_path / "evals" / "base", {n: (0.5, 1.0) for n in names})
    _eval_csv(tmp_path / "evals" / "ends", {n: (0.55, 0.9) for n in names})
    photo = tmp_path / "p.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (60, 80, 3), np.uint8)).save(photo)
    report = tmp_path / "frontier.md"
    report.write_text("# Frontier\n\nprose kept\n")
    assert main(["--model", f"base={tiny_onnx}", "--model", f"ends={ends}", "--evals",
                 str(tmp_path / "evals"), "--sizes", "48", "--repeats", "1", "--engines",
                 "onnxruntime", "--report", str(report), "--photo", str(photo),
                 "--row-styles", names[0], "--row-size", "32"]) == 0
    text = report.read_text()
    assert text.startswith("# Frontier\n\nprose kept\n\n<!-- frontier:begin -->\nCommand: ")
    assert text.endswith("(frontier-row.jpg)\n<!-- frontier:end -->\n")  # the docs' markers
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    base, var = rows[1], rows[2]
    assert "**base**" in base and "1.00x" in base
    assert "separable" in var and "resize" in var and "(+10.0 %)" in var and "(-10.0 %)" in var
    params = sum(p.numel() for p in g.parameters())
    assert f"{params:,}" in var
    assert (tmp_path / "frontier.png").stat().st_size > 10_000
    with Image.open(tmp_path / "frontier-row.jpg") as im:
        assert im.size[1] == 2 * 32  # a row per model
    assert "ms 48x48 ORT CPU" in capsys.readouterr().out


def test_frontier_refuses_a_missing_model_or_baseline(tiny_onnx, tmp_path):
    with pytest.raises(UserError, match="NAME=PATH"):
        main(["--model", str(tiny_onnx)])
    with pytest.raises(UserError, match="baseline"):
        main(["--model", f"a={tiny_onnx}", "--baseline", "b"])
