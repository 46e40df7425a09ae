"""`stylebox eval`: how well does a served model match its styles and keep its photos?

    stylebox eval --model models/stylebox-a0.25.onnx --photos ../shared/data/eval-photos \\
        --config configs/default.toml --out docs/eval/a0.25 --blend candy,starry_night

For every style of the model and every photo (centre-cropped and resized to --size, square):
the ONNX file is run through the service's own engine, chosen like the service chooses it
(--engine/--precision, default auto: what is scored is what is served; the runtime is named
in eval.md),
and VGG-19 in PyTorch gives the style loss (Gram, against the style image at the config's
style_size) and the content loss (against the photo), with the layers and the relative
normalisation of training (training/losses.py). Written to OUT: eval.md and eval.csv (per
style means), eval_per_photo.csv, gallery.jpg (photos x styles) and, with --blend A,B, a
strip from style A to style B. Deterministic; runs on CPU.

Style images: --style-image NAME=PATH, else the config's [[styles]] entry of that name, else
the painting `stylebox add-style` recorded in the model's card (its file name, looked for in
--styles-dir, in the data root's styles/ folder and in the current folder), else NAME.jpg
(.png, ...) in --styles-dir and the data root's styles/ folder. So the shipped model's added
styles need no flag. "photo" in the table is the unstylized photo's style loss: a reference
for how far each style is from the photos to begin with.
"""

from __future__ import annotations

import csv
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageOps

from stylebox.errors import UserError, doc_parser, need_file
from stylebox.model.card import ModelCard
from stylebox.model.edit import style_origins
from stylebox.service.backends import open_engine
from stylebox.service.engine import Engine
from stylebox.service.settings import EngineName, Precision, Settings, choices
from stylebox.training.accel import use_amp
from stylebox.training.config import TrainConfig
from stylebox.training.data import find_style_image, list_photos, load_style_images
from stylebox.training.losses import PerceptualLoss
from stylebox.training.vgg import VGGFeatures

CSV_FIELDS = ["style", "title", "style_loss", "content_loss", "photo_style_loss", "ratio"]


class EvalError(UserError):
    """A bad eval argument: a style the model lacks, a style image not found, ..."""


@dataclass
class StyleScore:
    style: str
    title: str
    style_loss: float  # mean over photos of the stylized photo's relative Gram error
    content_loss: float  # mean over photos of the relative feature error vs the photo
    photo_style_loss: float  # the unstylized photo's style loss: the starting point

    @property
    def ratio(self) -> float:
        return self.style_loss / self.photo_style_loss if self.photo_style_loss else 0.0


def load_photo(path: Path, size: int) -> np.ndarray:
    """uint8 (size, size, 3): EXIF-rotated, centre-cropped to a square, resized."""
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im).convert("RGB")
        return np.asarray(ImageOps.fit(im, (size, size), Image.Resampling.LANCZOS))


def find_style_images(names: list[str], cfg: TrainConfig, extra: dict[str, str],
                      styles_dir: str | Path | None,
                      card: ModelCard | None = None) -> dict[str, Path]:
    """Each style's painting: --style-image NAME=PATH, else training/data.find_style_image
    (the config's [[styles]], the file add-style recorded in the card, NAME.* in the styles
    folder)."""
    origins = style_origins(card) if card is not None else {}
    out, missing = {}, []
    for name in names:
        if name in extra:
            path, tried = Path(extra[name]), [extra[name]]
            path = path if path.is_file() else None
        else:
            path, tried = find_style_image(name, cfg, origins.get(name), styles_dir)
        if path is None:
            missing.append(f"{name} (looked for {', '.join(tried)})" if tried else name)
        else:
            out[name] = path
    if missing:
        raise EvalError(f"no style image for {'; '.join(missing)}; give it with "
                        "--style-image NAME=PATH, --styles-dir DIR or a [[styles]] entry in "
                        "--config")
    return out


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) RGB -> float (1, 3, H, W) in [0, 1], as the VGG loss takes images."""
    # A copy: ORT's and Pillow's arrays may be read-only, which torch.from_numpy warns about.
    return torch.from_numpy(np.array(rgb)).permute(2, 0, 1)[None].float() / 255  # (1, 3, H, W)


@torch.no_grad()
def score(engine: Engine, photos: list[np.ndarray], loss_fn: PerceptualLoss,
          names: list[str] | None = None,
          ) -> tuple[list[StyleScore], list[dict], dict[str, list[np.ndarray]]]:
    """Per-style means, per-photo rows and the stylized images of `names` (default: every
    style of the model); loss_fn holds one target per name, in that order."""
    names = names or engine.style_names
    n = len(names)
    sums = np.zeros((n, 3))
    rows: list[dict] = []
    images: dict[str, list[np.ndarray]] = {s: [] for s in names}
    for p, rgb in enumerate(photos):
        ref = loss_fn.vgg(to_tensor(rgb))
        for i, name in enumerate(names):
            idx = torch.tensor([i])
            out = engine.stylize(rgb, engine.one_hot(engine.style_names.index(name)))
            images[name].append(out)
            feats = loss_fn.vgg(to_tensor(out))
            vals = (loss_fn.style_loss(feats, idx).item(), loss_fn.content_loss(feats, ref).item(),
                    loss_fn.style_loss(ref, idx).item())
            sums[i] += vals
            rows.append({"photo": p, "style": name, "style_loss": vals[0],
                         "content_loss": vals[1], "photo_style_loss": vals[2]})
    means = sums / max(len(photos), 1)
    titles = {s.name: s.title for s in engine.card.styles}
    scores = [StyleScore(name, titles[name], *map(float, means[i]))
              for i, name in enumerate(names)]
    return scores, rows, images


def _label(draw: ImageDraw.ImageDraw, xy: tuple[int, int], text: str, width: int) -> None:
    while text and draw.textlength(text) > width - 6:
        text = text[:-1]  # Pillow's built-in font: no wrapping, so clip long names
    draw.text((xy[0] + 3, xy[1] + 3), text, fill=(20, 20, 20))


def gallery(photos: list[np.ndarray], images: dict[str, list[np.ndarray]],
            style_images: dict[str, Path], tile: int) -> Image.Image:
    """Rows: the style images, then one row per photo; columns: the photo, then each style."""
    names, band = list(images), 18
    sheet = Image.new("RGB", ((len(names) + 1) * tile, (len(photos) + 1) * tile + band), "white")
    draw = ImageDraw.Draw(sheet)
    _label(draw, (0, tile), "photo", tile)
    for c, name in enumerate(names, start=1):
        with Image.open(style_images[name]) as im:
            thumb = ImageOps.fit(im.convert("RGB"), (tile, tile), Image.Resampling.LANCZOS)
        sheet.paste(thumb, (c * tile, 0))
        _label(draw, (c * tile, tile), name, tile)
    for r, rgb in enumerate(photos):
        y = tile + band + r * tile
        row = [rgb, *(images[n][r] for n in names)]
        for c, arr in enumerate(row):
            sheet.paste(Image.fromarray(arr).resize((tile, tile), Image.Resampling.LANCZOS),
                        (c * tile, y))
    return sheet


def blend_strip(engine: Engine, rgb: np.ndarray, a: str, b: str, steps: int,
                tile: int) -> Image.Image:
    """`steps` images from pure `a` to pure `b` (one forward pass each, weights (1-t, t))."""
    names = engine.style_names
    for s in (a, b):
        if s not in names:
            raise EvalError(f"blend style {s!r} is not in the model ({', '.join(names)})")
    if steps < 2:
        raise EvalError("--blend-steps must be >= 2")
    band = 18
    strip = Image.new("RGB", (steps * tile, tile + band), "white")
    draw = ImageDraw.Draw(strip)
    for k, t in enumerate(np.linspace(0.0, 1.0, steps)):
        w = np.zeros(len(names), np.float32)
        w[names.index(a)] += 1 - t
        w[names.index(b)] += t
        out = Image.fromarray(engine.stylize(rgb, w)).resize((tile, tile),
                                                              Image.Resampling.LANCZOS)
        strip.paste(out, (k * tile, 0))
        _label(draw, (k * tile, tile), f"{a} {1 - t:.2f} / {b} {t:.2f}", tile)
    return strip


def write_tables(out: Path, scores: list[StyleScore], rows: list[dict], meta: dict) -> None:
    fmt = "{:.4f}".format
    with open(out / "eval.csv", "w", newline="") as f:
        w = csv.DictWriter(f, CSV_FIELDS)
        w.writeheader()
        for s in scores:
            w.writerow({**{k: v if isinstance(v, str) else f"{v:.6g}"
                           for k, v in asdict(s).items()}, "ratio": f"{s.ratio:.6g}"})
    with open(out / "eval_per_photo.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["photo", "file", "style", "style_loss", "content_loss",
                               "photo_style_loss"])
        w.writeheader()
        for r in rows:
            w.writerow({**{k: f"{v:.6g}" if isinstance(v, float) else v for k, v in r.items()},
                        "file": meta["photos"][r["photo"]]})
    mean = [float(np.mean([getattr(s, k) for s in scores]))
            for k in ("style_loss", "content_loss", "photo_style_loss")]
    lines = [
        f"# Evaluation of `{meta['model']}` ({meta['card']})", "",
        f"{len(meta['photos'])} photos from `{meta['photo_dir']}`, centre-cropped to "
        f"{meta['size']}x{meta['size']}; style images at {meta['style_size']} px (long side); "
        f"VGG `{meta['vgg']}`; style layers {', '.join(meta['style_layers'])}; content layers "
        f"{', '.join(meta['content_layers'])}; run on {meta.get('engine', 'onnxruntime f32')}. "
        "Losses are the relative errors of training "
        "(`training/losses.py`); *photo* is the unstylized photo's style loss, *ratio* = style "
        "/ photo (lower is closer to the style).", "",
        "| style | title | style loss | content loss | photo | ratio |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    lines += [f"| {s.style} | {s.title} | {fmt(s.style_loss)} | {fmt(s.content_loss)} | "
              f"{fmt(s.photo_style_loss)} | {s.ratio:.3f} |" for s in scores]
    lines += [f"| **mean** | | {fmt(mean[0])} | {fmt(mean[1])} | {fmt(mean[2])} | "
              f"{mean[0] / mean[2] if mean[2] else 0:.3f} |", "", "![gallery](gallery.jpg)"]
    lines += ["", f"![blend]({meta['blend']})"] if meta.get("blend") else []
    lines += meta.get("ceiling_lines", [])
    (out / "eval.md").write_text("\n".join(lines) + "\n")


def ceiling(photos: list[np.ndarray], images: dict[str, list[np.ndarray]],
            loss_fn: PerceptualLoss, rows: list[dict], n: int, iterations: int,
            time_limit_s: float | None, amp: bool, save: Path | None = None) -> list[dict]:
    """How far the model is from the best its loss allows: for the first `n` photos, each
    style's stylized photo optimised further by Gatys et al.'s per-image optimisation
    (training/optimize.py), with the same loss (layers, weights) that scored it; the model's
    own losses on those photos (from `rows`) beside the optimised ones; `save`: a folder
    for each pair of pictures (P-STYLE-model.jpg, P-STYLE-ceiling.jpg)."""
    from stylebox.training.optimize import measure, optimize_image, to_uint8

    model = {(r["photo"], r["style"]): r for r in rows}
    loss_fn.vgg.to(memory_format=torch.channels_last)  # after scoring: oneDNN's fast layout
    out = []
    for p, rgb in enumerate(photos[:n]):
        x = to_tensor(rgb)  # (1, 3, S, S)
        with torch.no_grad():
            ref = loss_fn.vgg(x, loss_fn.content_layers)
        for i, name in enumerate(images):
            idx = torch.tensor([i])
            t0 = time.monotonic()
            best, done, _ = optimize_image(
                loss_fn, to_tensor(images[name][p]), ref, idx, iterations=iterations,
                deadline=t0 + time_limit_s if time_limit_s else None, amp=amp)
            style, content = measure(loss_fn, best, ref, idx)
            if save is not None:
                save.mkdir(parents=True, exist_ok=True)
                Image.fromarray(images[name][p]).save(save / f"{p}-{name}-model.jpg", quality=92)
                Image.fromarray(to_uint8(best)).save(save / f"{p}-{name}-ceiling.jpg", quality=92)
            m = model[(p, name)]
            out.append({"photo": p, "style": name, "model_style_loss": m["style_loss"],
                        "model_content_loss": m["content_loss"], "ceiling_style_loss": style,
                        "ceiling_content_loss": content, "iterations": done,
                        "seconds": time.monotonic() - t0})
            print(f"ceiling: photo {p} {name}: style {m['style_loss']:.4f} -> {style:.4f}, "
                  f"content {m['content_loss']:.4f} -> {content:.4f} ({done} iterations, "
                  f"{out[-1]['seconds']:.0f} s)", flush=True)
    return out


CEILING_FIELDS = ["photo", "file", "style", "model_style_loss", "model_content_loss",
                  "ceiling_style_loss", "ceiling_content_loss", "iterations", "seconds"]


def write_ceiling(out: Path, rows: list[dict], meta: dict) -> list[str]:
    """eval_ceiling.csv (per photo) and the eval.md section (per style means)."""
    with open(out / "eval_ceiling.csv", "w", newline="") as f:
        w = csv.DictWriter(f, CEILING_FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow({**{k: f"{v:.6g}" if isinstance(v, float) else v for k, v in r.items()},
                        "file": meta["photos"][r["photo"]]})
    keys = ("model_style_loss", "ceiling_style_loss", "model_content_loss",
            "ceiling_content_loss", "iterations", "seconds")
    styles = list(dict.fromkeys(r["style"] for r in rows))
    means = {s: [float(np.mean([r[k] for r in rows if r["style"] == s])) for k in keys]
             for s in styles}
    means["**mean**"] = [float(np.mean([m[j] for m in means.values()])) for j in range(6)]
    n = len({r["photo"] for r in rows})
    lines = ["", "## Ceiling", "",
             f"The first {n} photo(s), each style's output optimised further (Gatys et al., "
             "`training/optimize.py`: L-BFGS on the pixels, the same loss) for at most "
             f"{meta['ceiling_iterations']} iterations / {meta['ceiling_time']} per image: "
             "how far the model is from the best its loss allows on these photos. "
             "*x* = ceiling style / model style.", "",
             "| style | model style | ceiling style | x | model content | ceiling content "
             "| iterations | s |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {s} | {m[0]:.4f} | {m[1]:.4f} | {m[1] / m[0] if m[0] else 0:.3f} | "
              f"{m[2]:.4f} | {m[3]:.4f} | {m[4]:.0f} | {m[5]:.0f} |" for s, m in means.items()]
    return lines


def evaluate(model: str | Path, photo_dir: str | Path, cfg: TrainConfig, out: str | Path, *,
             size: int = 256, tile: int = 160, max_photos: int = 0,
             style_images: dict[str, str] | None = None, styles_dir: str | Path | None = None,
             blend: tuple[str, str] | None = None, blend_steps: int = 6, blend_photo: int = 0,
             vgg: VGGFeatures | None = None, providers: list[str] | None = None,
             only: list[str] | None = None, runtime: str = "auto",
             precision: str = "auto", ceiling_photos: int = 0,
             ceiling_iterations: int = 300, ceiling_time_s: float | None = 170.0) -> dict:
    """Score `model` on the photos (`only` those styles, if given) on the engine the service
    would choose for `runtime`/`precision`; write the tables and pictures to `out`; a
    summary back. `ceiling_photos` > 0: also the ceiling (``ceiling``) on that many."""
    engine = open_engine(Settings(model_path=str(model), engine=runtime, precision=precision,
                                  providers=providers or ["CPUExecutionProvider"]))
    names = engine.style_names
    if only:
        unknown = [s for s in only if s not in names]
        if unknown:
            raise EvalError(f"--styles {', '.join(unknown)}: not in the model "
                            f"({', '.join(names)})")
        names = [s for s in names if s in only]
    if blend:  # the strip needs no style image: any style of the model, scored or not
        for s in blend:
            if s not in engine.style_names:
                raise EvalError(f"blend style {s!r} is not in the model "
                                f"({', '.join(engine.style_names)})")
    # Before any file is looked for: a missing data root is the one fix for all of them.
    needs = [cfg.vgg_weights] if vgg is None and cfg.vgg_weights != "torchvision" else []
    cfg.check_data_root(needs + ["styles"] * any(n not in (style_images or {}) for n in names))
    images_for = find_style_images(names, cfg, style_images or {}, styles_dir, engine.card)
    files = list_photos(photo_dir, max_photos)
    if not 0 <= blend_photo < len(files):
        raise EvalError(f"--blend-photo {blend_photo} is not one of the {len(files)} photos")
    photos = [load_photo(f, size) for f in files]
    torch.manual_seed(0)  # nothing here is random; this only pins any library default
    loss_fn = PerceptualLoss.from_config(cfg, vgg, measure=True).cpu()  # unweighted terms
    loss_fn.set_style_targets(load_style_images([images_for[n] for n in names], cfg.style_size))
    scores, rows, images = score(engine, photos, loss_fn, names)

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    gallery(photos, images, images_for, tile).save(out / "gallery.jpg", quality=88)
    blend_name = None
    if blend:
        blend_name = f"blend-{blend[0]}-{blend[1]}.jpg"
        blend_strip(engine, photos[blend_photo], *blend, blend_steps, tile).save(
            out / blend_name, quality=88)
    meta = {"model": Path(model).name, "card": f"{engine.card.name}@{engine.card.version}, "
            f"alpha {engine.card.alpha}, {engine.card.n_styles} styles",
            "photos": [f.name for f in files], "photo_dir": str(photo_dir), "size": size,
            "style_size": cfg.style_size, "vgg": Path(str(cfg.vgg_weights)).name,
            "style_layers": cfg.style_layers, "content_layers": cfg.content_layers,
            "blend": blend_name, "engine": f"{engine.backend} {engine.precision}"}
    ceiling_rows = []
    if ceiling_photos:  # after the tables' numbers: this adds to them, it changes nothing
        ceiling_rows = ceiling(photos, images, loss_fn, rows, ceiling_photos,
                               ceiling_iterations, ceiling_time_s,
                               use_amp(torch.device("cpu"), cfg.amp), out / "ceiling")
        meta |= {"ceiling_iterations": ceiling_iterations,
                 "ceiling_time": f"{ceiling_time_s:g} s" if ceiling_time_s else "no time limit"}
        meta["ceiling_lines"] = write_ceiling(out, ceiling_rows, meta)
    write_tables(out, scores, rows, meta)
    return {"scores": scores, "out": str(out), "n_photos": len(files), "blend": blend_name,
            "ceiling": ceiling_rows}


def _pairs(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise EvalError(f"--style-image wants NAME=PATH, got {item!r}")
        out[name] = path
    return out


def main(argv: list[str] | None = None) -> int:
    p = doc_parser("stylebox eval", __doc__)
    p.add_argument("--model", required=True, help="exported .onnx file")
    p.add_argument("--photos", required=True, help="folder of evaluation photos")
    p.add_argument("--config", default="configs/default.toml",
                   help="training config: style images, VGG file, layers, style_size")
    p.add_argument("--data-root", help="override the config's data_root")
    p.add_argument("--style-image", action="append", default=[], metavar="NAME=PATH",
                   help="style image for a style the config lacks (repeatable)")
    p.add_argument("--styles-dir", help="folder of style images (NAME.jpg/.png, or the file "
                   "add-style recorded), looked at before the data root's styles/")
    p.add_argument("--out", help="output folder (default docs/eval/MODEL_STEM)")
    p.add_argument("--size", type=int, default=256, help="photos are scored at SIZE x SIZE")
    p.add_argument("--tile", type=int, default=160, help="gallery tile side in pixels")
    p.add_argument("--max-photos", type=int, default=0, help="0 = all")
    p.add_argument("--blend", help="A,B: also write a strip from style A to style B")
    p.add_argument("--blend-steps", type=int, default=6)
    p.add_argument("--blend-photo", type=int, default=0, help="index of the photo to blend")
    p.add_argument("--providers", default="CPUExecutionProvider",
                   help="ONNX Runtime providers, comma-separated")
    p.add_argument("--styles", help="A,B,...: score only these styles (default: all)")
    p.add_argument("--engine", default="auto", choices=choices(EngineName),
                   help="runtime, as STYLEBOX_ENGINE (default auto: what serve would use)")
    p.add_argument("--precision", default="auto", choices=choices(Precision),
                   help="as STYLEBOX_PRECISION")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (e.g. style_size=256)")
    p.add_argument("--ceiling", type=int, default=0, metavar="N",
                   help="also optimise each style's output for the first N photos (Gatys, "
                   "`stylebox optimize`) and report those losses: the ceiling (slow: up to "
                   "--ceiling-time per photo and style)")
    p.add_argument("--ceiling-iterations", type=int, default=300)
    p.add_argument("--ceiling-time", type=float, default=170.0,
                   help="seconds per photo and style (0 = no limit; default 170)")
    args = p.parse_args(argv)
    if args.size < 8 or args.tile < 16:
        p.error("--size must be >= 8 and --tile >= 16")
    if args.ceiling < 0 or args.ceiling_iterations < 1:
        p.error("--ceiling must be >= 0 and --ceiling-iterations >= 1")
    # A missing --model is a bad argument (exit 2); one that exists but does not load is a
    # ModelLoadError (exit 1), as for `stylebox serve`.
    need_file(args.model, "model file")
    cfg = TrainConfig.load(args.config, args.set)
    if args.data_root:
        cfg = cfg.replace(data_root=args.data_root)
    blend = None
    if args.blend:
        parts = [s.strip() for s in args.blend.split(",")]
        if len(parts) != 2 or not all(parts):
            raise EvalError(f"--blend wants two style names A,B, got {args.blend!r}")
        blend = (parts[0], parts[1])
    if blend and args.blend_steps < 2:
        raise EvalError("--blend-steps must be >= 2")
    out = args.out or f"docs/eval/{Path(args.model).stem}"
    s = evaluate(args.model, args.photos, cfg, out, size=args.size, tile=args.tile,
                 max_photos=args.max_photos, style_images=_pairs(args.style_image),
                 styles_dir=args.styles_dir, blend=blend, blend_steps=args.blend_steps,
                 blend_photo=args.blend_photo, providers=args.providers.split(","),
                 only=[s.strip() for s in args.styles.split(",")] if args.styles else None,
                 runtime=args.engine, precision=args.precision, ceiling_photos=args.ceiling,
                 ceiling_iterations=args.ceiling_iterations,
                 ceiling_time_s=args.ceiling_time or None)
    print(Path(s["out"], "eval.md").read_text())
    print(f"stylebox eval: {s['n_photos']} photos x {len(s['scores'])} styles -> {s['out']} "
          f"(eval.md, eval.csv, eval_per_photo.csv, gallery.jpg"
          + (f", {s['blend']}" if s["blend"] else "")
          + (", eval_ceiling.csv)" if s["ceiling"] else ")"))
    return 0
