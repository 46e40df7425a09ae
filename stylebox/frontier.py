"""`stylebox frontier`: every candidate network side by side, speed against quality.

    stylebox frontier --model a0.25=models/stylebox-a0.25.onnx --model r2=runs/r2.onnx \\
        --evals runs/eval --baseline a0.25 --sizes 512,1920x1080 \\
        --report docs/frontier.md --photo ../shared/data/eval-photos/kodak_kodim23.jpg

For each model: parameters, `.onnx` size, median ms per image at each size on every engine
this host runs (ONNX Runtime f32, OpenVINO at every precision the CPU has natively: the
timing of `stylebox bench`, the models interleaved so a burst of someone else's load hits
them alike), and the style and content loss of `stylebox eval` read from EVALS/NAME/eval.csv,
averaged over the styles every model has (so models with more styles compare on the same
ones). Ratios are against --baseline. With --report the table, a plot (ms against style and
content loss) and, with --photo, a picture row per model (the photo in --row-styles) are
written between `<!-- frontier:begin -->` and `<!-- frontier:end -->`, keeping the prose.
"""

from __future__ import annotations

import csv
import os
import shlex
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from stylebox.bench import ORT_CPU, Row, machine_text, parse_sizes, runners, time_models
from stylebox.errors import UserError, doc_parser
from stylebox.report import write_between


def parse_models(items: list[str]) -> dict[str, Path]:
    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not Path(path).is_file():
            raise UserError(f"--model {item!r}: want NAME=PATH to an existing .onnx file")
        out[name] = Path(path)
    return out


def eval_means(folder: Path, styles: list[str]) -> tuple[float, float] | None:
    """Mean style and content loss over `styles` from `stylebox eval`'s eval.csv."""
    f = folder / "eval.csv"
    if not f.is_file():
        return None
    with open(f) as fh:
        rows = {r["style"]: r for r in csv.DictReader(fh)}
    if not all(s in rows for s in styles):
        return None
    return (float(np.mean([float(rows[s]["style_loss"]) for s in styles])),
            float(np.mean([float(rows[s]["content_loss"]) for s in styles])))


def describe(path: Path) -> tuple[int, str, list[str]]:
    """(parameters, what the card's arch says, style names)."""
    from stylebox.model.checkpoint import load_generator

    gen, card = load_generator(path)
    arch = [f"α {card.alpha:g}"]
    if gen.cfg.widths:
        arch = [f"pruned from α {card.alpha:g} ({sum(gen.cfg.widths)} channels)"]
    arch += [k for k in ("separable",) if gen.cfg.separable]
    arch += [f"resize: {gen.cfg.resize}"] if gen.cfg.resize != "none" else []
    return sum(p.numel() for p in gen.parameters()), ", ".join(arch), card.style_names


def picture_row(models: dict[str, Path], photo: Path, styles: list[str], tile: int) -> Image.Image:
    """One row per model (the photo in each style), labelled; the photo first."""
    from stylebox.service.backends.ort import OrtEngine
    from stylebox.training.eval import load_photo

    rgb = load_photo(photo, tile)
    band = 110
    sheet = Image.new("RGB", (band + tile * (len(styles) + 1), tile * len(models)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (name, path) in enumerate(models.items()):
        engine = OrtEngine(path)
        y = r * tile
        sheet.paste(Image.fromarray(rgb), (band, y))
        for c, style in enumerate(styles, start=1):
            out = engine.stylize(rgb, engine.one_hot(engine.card.style_names.index(style)))
            sheet.paste(Image.fromarray(out), (band + c * tile, y))
        draw.text((6, y + tile // 2 - 6), name, fill=(20, 20, 20))
    return sheet


def plot(points: list[dict], out: Path, baseline: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, title in ((axes[0], "style", "style loss (lower: closer to the painting)"),
                           (axes[1], "content", "content loss (lower: more of the photo)")):
        for p in points:
            if p.get(key) is None:
                continue
            base = p["name"] == baseline
            ax.scatter(p["ms"], p[key], s=60 if base else 35,
                       color="black" if base else "tab:blue", zorder=3)
            ax.annotate(p["name"], (p["ms"], p[key]), textcoords="offset points",
                        xytext=(5, 4), fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel("ms per 512² image, ONNX Runtime f32, CPU (log)")
        ax.set_title(title, fontsize=10)
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def table(names: list[str], info: dict, rows: list[Row], losses: dict, baseline: str,
          sizes: list[str]) -> str:
    ms = {(r.model, r.provider, r.size): r.median_ms for r in rows}
    engines = list(dict.fromkeys(r.provider for r in rows))
    head = ["model", "network", "parameters", ".onnx"]
    head += [f"ms {s} {e}" for e in engines for s in sizes]
    head += ["speed vs " + baseline, "style loss", "content loss"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 4 + "---:|" * (len(head) - 4)]
    b_ms = ms.get((baseline, ORT_CPU, sizes[0]))
    b_loss = losses.get(baseline)
    for n in names:
        params, arch, size_mb = info[n]
        cells = [f"**{n}**" if n == baseline else n, arch, f"{params:,}", f"{size_mb:.2f} MB"]
        cells += [f"{ms[(n, e, s)]:.0f}" if (n, e, s) in ms else "" for e in engines
                  for s in sizes]
        own = ms.get((n, ORT_CPU, sizes[0]))
        cells.append(f"{b_ms / own:.2f}x" if b_ms and own else "")
        loss = losses.get(n)
        for i in (0, 1):
            if loss is None:
                cells.append("")
            elif b_loss and n != baseline:
                cells.append(f"{loss[i]:.3f} ({100 * (loss[i] / b_loss[i] - 1):+.1f} %)")
            else:
                cells.append(f"{loss[i]:.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = doc_parser("stylebox frontier", __doc__)
    p.add_argument("--model", action="append", default=[], metavar="NAME=PATH",
                   help="a candidate .onnx (repeatable); NAME labels it everywhere")
    p.add_argument("--evals", help="folder of `stylebox eval` outputs, one NAME/ per model")
    p.add_argument("--baseline", help="the model ratios are against (default: the first)")
    p.add_argument("--sizes", default="512,1920x1080")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--engines", default="all", help="onnxruntime, openvino or all")
    p.add_argument("--precisions", default="all", help="OpenVINO precisions (default: native)")
    p.add_argument("--report", help="markdown file to write the table into")
    p.add_argument("--plot", help="plot file (default: next to --report, .png)")
    p.add_argument("--photo", help="photo for the picture row (with --report)")
    p.add_argument("--row-styles", default="candy,starry_night,wave")
    p.add_argument("--row-size", type=int, default=224)
    args = p.parse_args(argv)
    models = parse_models(args.model)
    if not models:
        raise UserError("give at least one --model NAME=PATH")
    baseline = args.baseline or next(iter(models))
    if baseline not in models:
        raise UserError(f"--baseline {baseline} is not one of the --model names")
    try:
        sizes = parse_sizes(args.sizes)
    except ValueError as e:
        raise UserError(f"--sizes: {e}") from None

    described = {n: describe(path) for n, path in models.items()}
    common = [s for s in described[baseline][2] if all(s in d[2] for d in described.values())]
    info = {n: (d[0], d[1], models[n].stat().st_size / 1e6) for n, d in described.items()}
    losses = {}
    if args.evals:
        for n in models:
            if (got := eval_means(Path(args.evals) / n, common)) is not None:
                losses[n] = got
    # time_models names rows by file stem: time copies named after the candidates
    rows: list[Row] = []
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for n, path in models.items():
            link = Path(tmp) / f"{n}.onnx"
            link.write_bytes(path.read_bytes())
            paths.append(link)
        for runner in runners(args.engines, ["CPUExecutionProvider"], args.precisions):
            rows += time_models(paths, sizes, args.repeats, args.threads, runner)
    size_names = list(dict.fromkeys(r.size for r in rows))
    cmd = "stylebox frontier " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    body = (f"Command: `{cmd}`\n\n{machine_text(None, load_before)}\n"
            f"Milliseconds: median of {args.repeats} runs per size after a warm-up, batch 1. "
            f"Losses: `stylebox eval` means over the {len(common)} styles every model has "
            f"({', '.join(common)}); in brackets the change against {baseline}.\n\n"
            + table(list(models), info, rows, losses, baseline, size_names))
    print(body)
    if args.report:
        md = Path(args.report)
        png = Path(args.plot) if args.plot else md.with_suffix(".png")
        ms = {r.model: r.median_ms for r in rows if r.provider == ORT_CPU
              and r.size == size_names[0]}
        plot([{"name": n, "ms": ms.get(n), "style": losses.get(n, (None, None))[0],
               "content": losses.get(n, (None, None))[1]} for n in models if n in ms],
             png, baseline)
        rel = os.path.relpath(png, md.parent)
        body += f"\n\n![ms per image against style and content loss]({rel})"
        if args.photo:
            styles = [s.strip() for s in args.row_styles.split(",") if s.strip()]
            bad = [s for s in styles if s not in common]
            if bad:
                raise UserError(f"--row-styles {bad} are not in every model")
            row_png = md.with_name(md.stem + "-row.jpg")
            picture_row(models, Path(args.photo), styles, args.row_size).save(row_png,
                                                                               quality=88)
            body += (f"\n\n![each model: the photo, then {', '.join(styles)}]"
                     f"({os.path.relpath(row_png, md.parent)})")
        write_between(md, "frontier", body, title="Frontier")
        print(f"\nwrote {md} and {png}")
    return 0
