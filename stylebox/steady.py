"""`stylebox steady-frontier`: stability against style, every candidate model on one plot.

    stylebox steady-frontier ../shared/data/eval-photos \\
        --model 'default=models/stylebox-a0.25.onnx' \\
        --model 'steady=models/stylebox-a0.25-steady.onnx::stylebox train ... (how it was made)' \\
        --csv docs/flicker-frontier.csv --figure docs/flicker-frontier.png \\
        --report docs/flicker.md

Each --model is NAME=PATH, optionally followed by ``::`` and the command that made it. For
each model it runs `stylebox eval` (--eval-photos photos at --size, content at relu4_1: the
project's quality scores) and `stylebox flicker` (frame by frame on ONNX Runtime f32, the 1-px
pan, 1 % zoom, 0.5° rotation and the still scene with noise, on --flicker-photos photos), and
keeps one row per model in --csv: the means over --styles (default: the config's jointly
trained styles), the added styles' own means, and the command. A row whose model file
(sha256) and settings are unchanged is reused, so adding a candidate measures only it. The
plot puts the 1-px pan against the style loss, one labelled point per model; the table goes
between the `steady-frontier` markers of --report.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import tempfile
from pathlib import Path

import numpy as np

from stylebox.errors import UserError, doc_parser
from stylebox.report import write_between

MOTIONS = ("pan1", "zoom", "rotate", "noise")
FIELDS = ["name", "model", "sha256", "settings", "style", "content", "added_style",
          "added_content", *MOTIONS, "noise_input", "command"]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def parse_model(item: str) -> tuple[str, Path | None, str]:
    """NAME=PATH[::COMMAND], or a bare NAME: keep that row of --csv as it was measured (its
    model file may be on another machine)."""
    spec, _, command = item.partition("::")
    name, sep, path = spec.partition("=")
    if not sep and name.strip() and not command:
        return name.strip(), None, ""
    if not sep or not name or not Path(path).is_file():
        raise UserError(f"--model {item!r}: want NAME=PATH[::COMMAND] with an existing .onnx, "
                        "or a bare NAME to keep that row of --csv")
    return name.strip(), Path(path.strip()), command.strip()


def stored(row: dict[str, str]) -> dict:
    """A row read back from --csv, its numbers as floats."""
    return {k: (v if k in ("name", "model", "sha256", "settings", "command") else float(v))
            for k, v in row.items()}


def means(rows: list[dict], key: str, styles: list[str]) -> float:
    vals = [float(r[key]) for r in rows if r["style"] in styles]
    return float(np.mean(vals)) if vals else float("nan")


def measure(name: str, model: Path, photo_dir: str, joint: list[str], args) -> dict:
    """eval and flicker of one model, through their own commands, in a scratch folder."""
    from stylebox.flicker import main as flicker_main
    from stylebox.training.eval import main as eval_main

    common = ["--engine", "onnxruntime", "--precision", "f32", "--config", args.config]
    common += ["--data-root", args.data_root] if args.data_root else []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        if eval_main(["--model", str(model), "--photos", photo_dir, "--size", str(args.size),
                      "--max-photos", str(args.eval_photos), "--out", str(out / "eval"),
                      "--set", f'content_layers=["{args.content_layer}"]', *common]):
            raise UserError(f"stylebox eval failed on {model}")
        if flicker_main([photo_dir, "--model", str(model), "--photos", str(args.flicker_photos),
                         "--frames", "3", "--motions", ",".join(MOTIONS), "--no-vgg",
                         "--report", str(out / "flicker.md"), *common]):
            raise UserError(f"stylebox flicker failed on {model}")
        with open(out / "eval" / "eval.csv") as f:
            ev = list(csv.DictReader(f))
        with open(out / "flicker-table.csv") as f:
            fl = [r for r in csv.DictReader(f) if float(r["carry"]) == 0 and r["codec"] == "none"]
    added = [r["style"] for r in ev if r["style"] not in joint]
    row = {"name": name, "model": str(model), "style": means(ev, "style_loss", joint),
           "content": means(ev, "content_loss", joint),
           "added_style": means(ev, "style_loss", added),
           "added_content": means(ev, "content_loss", added)}
    for m in MOTIONS:
        row[m] = float(np.mean([float(r["output"]) for r in fl if r["motion"] == m]))
    row["noise_input"] = float(np.mean([float(r["input"]) for r in fl if r["motion"] == "noise"]))
    print(f"{name}: " + ", ".join(f"{k} {row[k]:.4g}" for k in FIELDS[4:-1]), flush=True)
    return row


def write_rows(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, FIELDS)
        w.writeheader()
        w.writerows({k: (f"{v:.5g}" if isinstance(v, float) else v) for k, v in r.items()}
                    for r in rows)


def table(rows: list[dict], base: dict | None) -> str:
    head = ("| model | style | content | added styles: style | 1-px pan | zoom 1 % | "
            "rotate 0.5° | still + noise (input) |\n"
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")

    def rel(r: dict, k: str) -> str:
        if not base or r is base:
            return f"{r[k]:.3f}"
        return f"{r[k]:.3f} ({100 * (r[k] / base[k] - 1):+.1f} %)"

    lines = [head] + [
        f"| {r['name']} | {rel(r, 'style')} | {rel(r, 'content')} | {rel(r, 'added_style')} | "
        f"{r['pan1']:.2f} | {r['zoom']:.2f} | {r['rotate']:.2f} | "
        f"{r['noise']:.2f} ({r['noise_input']:.2f}) |" for r in rows]
    cmds = [f"- **{r['name']}** (`{r['model']}`): `{r['command']}`" for r in rows if r["command"]]
    return "\n".join(lines + ([""] + cmds if cmds else []))


def _frontier(rows: list[dict]) -> set[int]:
    """ids of the rows no other row beats on both style and 1-px pan (lower is better)."""
    return {id(r) for r in rows
            if not any(o["style"] <= r["style"] and o["pan1"] <= r["pan1"]
                       and (o["style"], o["pan1"]) != (r["style"], r["pan1"]) for o in rows)}


# Where a label may go around its point, in points: nearest first; at each distance to the
# right, then up and down, then to the left.
_NEAR = [(round(d * math.cos(t), 1), round(d * math.sin(t) * 0.8, 1))
         for d in (5, 12, 22, 34, 48, 64, 82)
         for t in (math.radians(a) for a in (0, 35, -35, 70, -70, 90, -90, 145, -145, 180))]


def _place_labels(fig, ax, labels: list[tuple[str, tuple[float, float], bool]]) -> None:
    """Name each point where its label covers no other label, no dot and stays inside the
    panel: the nearest free place of _NEAR (the least covered one when none is free). A label
    right beside its point must be nearer to it than to any other dot; one farther away gets a
    thin line back to its point. Placed in display coordinates, so after the limits are final."""
    from matplotlib.text import Text
    from matplotlib.transforms import Bbox

    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    dots = [ax.transData.transform(o) for c in ax.collections for o in c.get_offsets()]
    taken = [Bbox.from_bounds(x - 5, y - 5, 10, 10) for x, y in dots]  # a dot is ~9 px wide
    taken += [t.get_window_extent(renderer) for t in ax.texts]  # the box's and line's notes

    def gap(box, pt) -> float:  # from a point to a box, px
        return math.hypot(max(box.x0 - pt[0], 0, pt[0] - box.x1),
                          max(box.y0 - pt[1], 0, pt[1] - box.y1))

    def cost(box, own, near: bool) -> float:
        inside = Bbox.intersection(box, frame)
        out = box.width * box.height - (inside.width * inside.height if inside else 0)
        over = sum(i.width * i.height for t in taken
                   if (i := Bbox.intersection(box, t)) is not None)
        # beside its point but as near another dot: which dot it names would be a guess
        unclear = near and any(gap(box, d) <= gap(box, own) + 2 for d in dots
                                 if math.dist(d, own) > 1)
        return out * 10 + over + 100 * unclear

    def beside(dx: float, dy: float) -> bool:  # the nearest ring of _NEAR: no line
        return math.hypot(dx, dy) <= 6

    def put(text, xy, dx, dy):
        return ax.annotate(text, xy, textcoords="offset points", xytext=(dx, dy), fontsize=7,
                           ha="left" if dx > 1 else "right" if dx < -1 else "center",
                           va="bottom" if dy > 1 else "top" if dy < -1 else "center",
                           arrowprops=None if beside(dx, dy) else {
                               "arrowstyle": "-", "lw": 0.6, "color": "0.45", "shrinkA": 1,
                               "shrinkB": 4})

    for text, xy, left in labels:
        own = ax.transData.transform(xy)
        best = None  # (cost, its label, its box); every other try is removed
        for dx, dy in sorted(_NEAR, key=lambda o: o[0] > 0) if left else _NEAR:
            ann = put(text, xy, dx, dy)
            ann.update_positions(renderer)
            box = Text.get_window_extent(ann, renderer)  # the text's own box, not its line's
            c = cost(box, own, beside(dx, dy))
            if best is None or c < best[0]:
                if best is not None:
                    best[1].remove()
                best = (c, ann, box)
            else:
                ann.remove()
            if c == 0:
                break
        taken.append(best[2])


def plot(rows: list[dict], path: Path, base: dict | None = None) -> None:
    """Two panels, one point per model: the 1-px pan against the style loss (steadiness
    against style), and the content loss against the style loss, where the box is what may
    replace the baseline (both within 3 % of it) and each point's colour is its 1-px pan."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4.8), dpi=110)
    pans = [r["pan1"] for r in rows]
    dots = bx.scatter([r["style"] for r in rows], [r["content"] for r in rows], c=pans,
                      cmap="viridis_r", s=40, vmin=min(pans), vmax=max(pans))
    fig.colorbar(dots, ax=bx, label="1-px pan (grey levels)")
    # Dozens of candidates crowd near the same style and steadiness: every point is drawn,
    # but only those worth finding are named (the table lists them all): the steadiest at
    # each style (the frontier), the baseline and the shipped models (under models/).
    named = _frontier(rows) | {id(r) for r in rows
                               if r is base or str(r["model"]).startswith("models/")}
    # Both panels span the styles that matter (up to +25 % of the baseline's); a point past
    # that sits on the right edge as a triangle, its style in its label.
    styles = [r["style"] for r in rows]
    lo = min(styles) - 0.01
    hi = max(styles) + 0.01 if base is None else max(base["style"] * 1.25, lo + 0.05)
    labels: dict = {ax: [], bx: []}  # per panel: (text, where, prefer the left side)
    for r in rows:
        colour = "C0" if id(r) in named else "0.6"
        for a, y in ((ax, r["pan1"]), (bx, r["content"])):
            if r["style"] > hi:
                a.scatter(hi, y, s=44, marker=">", color=colour, clip_on=False)
                labels[a].append((f"{r['name']} (style {r['style']:.2f})", (hi, y), True))
                continue
            if a is ax:  # the right panel's dots are coloured by their pan (above)
                a.scatter(r["style"], y, s=36, color=colour)
            if id(r) in named:
                labels[a].append((r["name"], (r["style"], y), False))
    for a in (ax, bx):
        a.set_xlim(lo, hi)
    if base is not None:
        # Where a candidate may replace the baseline: style and content within 3 % of it.
        ax.axvline(base["style"] * 1.03, color="grey", ls="--", lw=0.8)
        ax.annotate(f"style +3 % of {base['name']}", (base["style"] * 1.03, ax.get_ylim()[1]),
                    textcoords="offset points", xytext=(3, -12), fontsize=7, color="grey")
        bx.add_patch(plt.Rectangle((bx.get_xlim()[0], bx.get_ylim()[0]),
                                   base["style"] * 1.03 - bx.get_xlim()[0],
                                   base["content"] * 1.03 - bx.get_ylim()[0],
                                   color="green", alpha=0.08, lw=0))
        bx.annotate(f"within 3 % of {base['name']}", (bx.get_xlim()[0], bx.get_ylim()[0]),
                    textcoords="offset points", xytext=(4, 4), fontsize=7, color="green")
    ax.set_xlabel("style loss (stylebox eval, lower = closer to the painting)")
    ax.set_ylabel("1-px pan warping error (grey levels, lower = steadier)")
    ax.set_title("Steadiness against style", fontsize=10)
    bx.set_xlabel("style loss")
    bx.set_ylabel("content loss (lower = more of the photo kept)")
    bx.set_title("Content against style (colour: 1-px pan)", fontsize=10)
    for a in (ax, bx):
        a.grid(alpha=0.3)
    fig.tight_layout()
    for a in (ax, bx):
        _place_labels(fig, a, labels[a])
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = doc_parser("stylebox steady-frontier", __doc__)
    p.add_argument("photo_dir", help="folder of evaluation photos")
    p.add_argument("--model", action="append", required=True, metavar="NAME=PATH[::COMMAND]")
    p.add_argument("--csv", required=True, help="rows kept here (reused when unchanged)")
    p.add_argument("--figure", help="PNG: 1-px pan against style loss")
    p.add_argument("--report", help="markdown file for the table (between markers)")
    p.add_argument("--baseline", help="NAME the table's percentages compare to (default: first)")
    p.add_argument("--eval-photos", type=int, default=20)
    p.add_argument("--flicker-photos", type=int, default=3)
    p.add_argument("--size", type=int, default=384, help="eval size (square)")
    p.add_argument("--content-layer", default="relu4_1", help="eval's content layer")
    p.add_argument("--config", default="configs/default.toml",
                   help="training config: style images, VGG file and the joint styles")
    p.add_argument("--data-root", help="override the config's data_root")
    args = p.parse_args(argv)
    from stylebox.training.config import TrainConfig

    joint = [s.name for s in TrainConfig.load(args.config).styles]
    settings = json.dumps({"eval_photos": args.eval_photos, "size": args.size,
                           "content_layer": args.content_layer,
                           "flicker_photos": args.flicker_photos, "joint": joint})
    old: dict[str, dict] = {}
    if Path(args.csv).is_file():
        with open(args.csv) as f:
            old = {r["name"]: r for r in csv.DictReader(f)}
    rows: list[dict] = []
    for item in args.model:
        name, model, command = parse_model(item)
        prev = old.get(name)
        if model is None:
            if prev is None:
                raise UserError(f"--model {name}: no row named {name!r} in {args.csv} to keep")
            rows.append(stored(prev))
            continue
        digest = sha256(model)
        if prev and prev["sha256"] == digest and prev["settings"] == settings:
            row = stored(prev)
        else:
            row = measure(name, model, args.photo_dir, joint, args)
        rows.append({**row, "sha256": digest, "settings": settings, "command": command})
        # Saved after every model (with the old rows not remeasured yet), so a long run
        # that is stopped keeps what it measured.
        write_rows(Path(args.csv), rows + [r for n, r in old.items()
                                           if n not in {x["name"] for x in rows}])
    write_rows(Path(args.csv), rows)
    base = next((r for r in rows if r["name"] == args.baseline), rows[0])
    text = table(rows, base)
    print(text)
    if args.figure:
        plot(rows, Path(args.figure), base)
    if args.report:
        write_between(args.report, "steady-frontier", text)
    return 0
