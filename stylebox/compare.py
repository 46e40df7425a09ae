"""`stylebox compare`: several models side by side on the same photos and styles, one picture.

    stylebox compare ../shared/data/eval-photos/kodak_kodim01.jpg \\
        --model before=OLD.onnx --model after=models/stylebox-a0.25.onnx \\
        --styles candy,starry_night,mosaic --size 384 -o compare.jpg

One row per (photo, style), one column per model after the photo itself, each labelled. Every
model runs on ONNX Runtime f32 at the same size, so what differs between columns is the
network alone. Torch-free: it runs wherever `stylebox serve` does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stylebox.errors import UserError, doc_parser

LABEL = 18  # px of caption above each column's first tile


def load_photo(path: Path, size: int) -> np.ndarray:
    """uint8 (size, size, 3): the photo's centre square, resized with Lanczos."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im).convert("RGB")
    except OSError as e:
        raise UserError(f"{path}: not a readable image ({e})") from e
    return np.asarray(ImageOps.fit(im, (size, size), Image.Resampling.LANCZOS))


def parse_models(items: list[str]) -> list[tuple[str, Path]]:
    models = []
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name.strip() or not Path(path).is_file():
            raise UserError(f"--model {item!r}: want NAME=PATH with an existing .onnx")
        models.append((name.strip(), Path(path)))
    return models


def compare(photos: list[Path], models: list[tuple[str, Path]], styles: list[str],
            size: int):
    """The labelled grid, as a Pillow image."""
    from PIL import Image, ImageDraw

    from stylebox.service.backends.ort import OrtEngine

    engines = [(name, OrtEngine(path)) for name, path in models]
    for name, engine in engines:
        missing = [s for s in styles if s not in engine.style_names]
        if missing:
            raise UserError(f"model {name} has no style {', '.join(missing)} "
                            f"(it has {', '.join(engine.style_names)})")
    rows = [(p, s) for p in photos for s in styles]
    cols = 1 + len(engines)
    grid = Image.new("RGB", (cols * size, LABEL + len(rows) * size), "white")
    draw = ImageDraw.Draw(grid)
    for c, title in enumerate(["photo"] + [name for name, _ in engines]):
        draw.text((c * size + 4, 3), title, fill="black")
    for r, (photo, style) in enumerate(rows):
        rgb = load_photo(photo, size)  # (size, size, 3)
        y = LABEL + r * size
        grid.paste(Image.fromarray(rgb), (0, y))
        draw.text((4, y + 4), style, fill="white", stroke_width=2, stroke_fill="black")
        for c, (_, engine) in enumerate(engines, start=1):
            out = engine.stylize(rgb, engine.one_hot(engine.style_names.index(style)))
            grid.paste(Image.fromarray(out), (c * size, y))
    return grid


def main(argv: list[str] | None = None) -> int:
    p = doc_parser("stylebox compare", __doc__)
    p.add_argument("photos", nargs="+", type=Path, help="photo files")
    p.add_argument("--model", action="append", required=True, metavar="NAME=PATH",
                   help="a column; give two or more")
    p.add_argument("--styles", required=True, help="comma list: one row per photo and style")
    p.add_argument("--size", type=int, default=384, help="tile side in pixels (centre square)")
    p.add_argument("-o", "--out", required=True, type=Path, help="the picture (.jpg or .png)")
    args = p.parse_args(argv)
    if not 32 <= args.size <= 2048:
        raise UserError(f"--size {args.size}: want 32 to 2048")
    styles = [s.strip() for s in args.styles.split(",") if s.strip()]
    if not styles:
        raise UserError("--styles: name at least one style")
    grid = compare(args.photos, parse_models(args.model), styles, args.size)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    jpeg = args.out.suffix.lower() in (".jpg", ".jpeg")
    grid.save(args.out, **({"quality": 88} if jpeg else {}))
    print(f"stylebox compare: {len(args.photos) * len(styles)} rows x "
          f"{len(args.model)} models -> {args.out}")
    return 0
