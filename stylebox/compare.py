"""`stylebox compare`: several models side by side on the same photos and styles, one picture.

    stylebox compare ../shared/data/eval-photos/kodak_kodim01.jpg \\
        --model before=OLD.onnx --model after=models/stylebox-a0.25.onnx \\
        --styles candy,starry_night,mosaic --size 384 -o compare.jpg

One row per (photo, style), one column per model after the photo itself, each labelled. Every
model runs on ONNX Runtime f32 at the same size, so what differs between columns is the
network alone. Torch-free: it runs wherever `stylebox serve` does.

`--pan N` makes an animation instead (.webp or .gif): N frames in which the photo moves one
pixel to the left per frame, each frame stylized on its own, played forwards and back. A
still picture cannot show flicker; this shows it the way a hand-held video would, with the
models side by side.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stylebox.errors import UserError, doc_parser

LABEL = 18  # px of caption above each column's first tile


def load_photo(path: Path, size: int, extra: int = 0) -> np.ndarray:
    """uint8 (size, size + extra, 3): the photo's centre, resized with Lanczos; `extra`
    columns more for a pan to move over."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im).convert("RGB")
    except OSError as e:
        raise UserError(f"{path}: not a readable image ({e})") from e
    return np.asarray(ImageOps.fit(im, (size + extra, size), Image.Resampling.LANCZOS))


def parse_models(items: list[str]) -> list[tuple[str, Path]]:
    models = []
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not Path(path).is_file():
            raise UserError(f"--model {item!r}: want NAME=PATH with an existing .onnx")
        models.append((name.strip(), Path(path)))
    return models


def compare(photos: list[Path], models: list[tuple[str, Path]], styles: list[str],
            size: int, frames: int = 1) -> list:
    """The labelled grid as Pillow images: one, or `frames` of a 1-px-per-frame pan."""
    from PIL import Image, ImageDraw

    from stylebox.service.backends.ort import OrtEngine

    engines = [(name, OrtEngine(path)) for name, path in models]
    for name, engine in engines:
        missing = [s for s in styles if s not in engine.style_names]
        if missing:
            raise UserError(f"model {name} has no style {', '.join(missing)} "
                            f"(it has {', '.join(engine.style_names)})")
    rows = [(p, s) for p in photos for s in styles]
    wide = {p: load_photo(p, size, frames - 1) for p in photos}  # (size, size + frames - 1, 3)
    cols = 1 + len(engines)
    grids = []
    for t in range(frames):
        grid = Image.new("RGB", (cols * size, LABEL + len(rows) * size), "white")
        draw = ImageDraw.Draw(grid)
        for c, title in enumerate(["photo"] + [name for name, _ in engines]):
            draw.text((c * size + 4, 3), title, fill="black")
        for r, (photo, style) in enumerate(rows):
            rgb = np.ascontiguousarray(wide[photo][:, t:t + size])  # content moves left
            y = LABEL + r * size
            grid.paste(Image.fromarray(rgb), (0, y))
            for c, (_, engine) in enumerate(engines, start=1):
                out = engine.stylize(rgb, engine.one_hot(engine.style_names.index(style)))
                grid.paste(Image.fromarray(out), (c * size, y))
            draw.text((4, y + 4), style, fill="white", stroke_width=2, stroke_fill="black")
        grids.append(grid)
    return grids


def main(argv: list[str] | None = None) -> int:
    p = doc_parser("stylebox compare", __doc__)
    p.add_argument("photos", nargs="+", type=Path, help="photo files")
    p.add_argument("--model", action="append", required=True, metavar="NAME=PATH",
                   help="a column; give two or more")
    p.add_argument("--styles", required=True, help="comma list: one row per photo and style")
    p.add_argument("--size", type=int, default=384, help="tile side in pixels (centre square)")
    p.add_argument("--pan", type=int, default=0, metavar="N",
                   help="an animation of N frames, the photo moving 1 px per frame (.webp, .gif)")
    p.add_argument("-o", "--out", required=True, type=Path,
                   help="the picture (.jpg, .png; with --pan .webp or .gif)")
    args = p.parse_args(argv)
    if not 32 <= args.size <= 2048:
        raise UserError(f"--size {args.size}: want 32 to 2048")
    suffix = args.out.suffix.lower()
    if args.pan and (not 2 <= args.pan <= 64 or suffix not in (".webp", ".gif")):
        raise UserError("--pan N: want 2 to 64 frames and an .webp or .gif --out")
    styles = [s.strip() for s in args.styles.split(",") if s.strip()]
    if not styles:
        raise UserError("--styles: name at least one style")
    grids = compare(args.photos, parse_models(args.model), styles, args.size,
                    max(1, args.pan))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.pan:
        # Forwards and back, so the loop has no jump; 8 frames a second, like a slow pan.
        seq = grids + grids[-2:0:-1]
        extra = {"quality": 60, "method": 6} if suffix == ".webp" else {}
        seq[0].save(args.out, save_all=True, append_images=seq[1:], duration=125, loop=0,
                    **extra)
    else:
        grids[0].save(args.out, **({"quality": 88} if suffix in (".jpg", ".jpeg") else {}))
    print(f"stylebox compare: {len(args.photos) * len(styles)} rows x "
          f"{len(args.model)} models -> {args.out}")
    return 0
