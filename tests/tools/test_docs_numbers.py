"""The default model's numbers written by hand in the README agree with the files measured.

A new default regenerates the measured files (docs/eval/a0.25/eval.csv, the frontier's rows in
docs/flicker-frontier.csv); the prose around them is edited by hand (models/regen-docs.sh lists
where). These tests read both, so a number left over from the model before fails here:

- the README's evaluation table is docs/eval/a0.25/eval.csv, rounded as printed;
- the frontier row that names models/stylebox-a0.25.onnx is that file (its sha256), so the
  README's flicker and percentages, read from that row, describe the model that is served.
"""

from __future__ import annotations

import csv
import hashlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = "models/stylebox-a0.25.onnx"
JOINT = 8  # the styles trained together; the rest were added later (the table's "mean of the 8")


def _eval_rows() -> list[dict[str, str]]:
    with open(ROOT / "docs/eval/a0.25/eval.csv", newline="") as f:
        return list(csv.DictReader(f))


def _frontier() -> dict[str, dict[str, str]]:
    with open(ROOT / "docs/flicker-frontier.csv", newline="") as f:
        return {r["model"]: r for r in csv.DictReader(f)}


def _readme_eval_table() -> dict[str, list[str]]:
    """The README's table under "| style | style loss |": first cell (bold and "(added)"
    dropped) -> the next three cells."""
    lines = (ROOT / "README.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| style | style loss |"))
    table = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip().strip("*") for c in line.strip("|").split("|")]
        table[cells[0].removesuffix(" (added)")] = cells[1:4]
    return table


def _pct(new: float, old: float) -> str:
    return f"{(new / old - 1) * 100:+.1f} %"


def test_readme_evaluation_table_is_the_committed_eval():
    rows, table = _eval_rows(), _readme_eval_table()
    keys = ("style_loss", "content_loss", "ratio")
    for r in rows:
        assert table[r["style"]] == [f"{float(r[k]):.3f}" for k in keys], r["style"]
    means = [sum(float(r[k]) for r in rows[:JOINT]) / JOINT for k in keys]
    assert table["mean of the 8"] == [f"{m:.3f}" for m in means]
    assert set(table) == {r["style"] for r in rows} | {"mean of the 8"}


def test_the_frontier_row_of_the_default_is_the_served_file():
    row = _frontier()[DEFAULT]
    digest = hashlib.sha256((ROOT / DEFAULT).read_bytes()).hexdigest()
    assert row["sha256"] == digest, (
        f"docs/flicker-frontier.csv's row for {DEFAULT} ({row['name']}) measured another file: "
        "re-point the rows and rerun `stylebox steady-frontier` (models/README.md)")


def _default_and_classic() -> tuple[dict[str, str], dict[str, str]]:
    rows = _frontier()
    return rows[DEFAULT], rows["models/stylebox-a0.25-classic.onnx"]


def _text(path: str) -> str:
    """The file's text with every run of whitespace one space (sentences wrap anywhere)."""
    return re.sub(r"\s+", " ", (ROOT / path).read_text())


def test_readme_states_the_default_s_measured_flicker_and_cost():
    """The sentence under the evaluation table: style and content against the classic model
    and the 1-px pan, as the frontier measured them."""
    new, classic = _default_and_classic()
    text = _text("README.md")
    style = _pct(float(new["style"]), float(classic["style"]))
    content = _pct(float(new["content"]), float(classic["content"]))
    said = (f"the steady default is {style} in style and {content} in content on the 8 "
            "joint styles")
    assert said in text, f"README should say: {said}"
    pan = (f"a 1-px-pan flicker of {float(new['pan1']):.2f} grey levels instead of "
           f"{float(classic['pan1']):.1f}")
    assert pan in text, f"README should say: {pan}"


def test_models_readme_states_the_default_s_measured_flicker_and_cost():
    """models/README.md's row for the default: the same pan and the larger of the two costs."""
    new, classic = _default_and_classic()
    text = _text("models/README.md")
    pan = (f"a 1-px pan flickers {float(new['pan1']):.2f} grey levels instead of "
           f"{float(classic['pan1']):.1f}")
    worst = max(float(new[k]) / float(classic[k]) - 1 for k in ("style", "content")) * 100
    cost = f"style and content within {worst:.1f} % of the classic's"
    for said in (pan, cost):
        assert said in text, f"models/README.md should say: {said}"
