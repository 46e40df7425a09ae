"""Training data: photos decoded once into memory, crops and flips done on the device.

A DataLoader with per-step decoding and CPU crops starves a fast GPU; 1,567 photos at 256 px
short side are ~0.5 GB as uint8, so they live on the training device and every batch is a
handful of tensor slices. All randomness comes from one CPU `torch.Generator` that the loop
reseeds from (seed, rank, step) every step, so a resumed run draws exactly what an
uninterrupted one would, and drawing never waits on the device.
"""

from __future__ import annotations

import glob
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image, ImageOps

from stylebox.errors import UserError

if TYPE_CHECKING:
    from stylebox.training.config import TrainConfig

PHOTO_EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}


class DataError(UserError):
    """A photo folder or style image that is missing or empty."""


def list_photos(folder: str | Path, limit: int = 0) -> list[Path]:
    """The photos under `folder`, sorted; the first `limit` of them (0 = all)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"photo folder {folder} not found")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in PHOTO_EXTENSIONS)
    if not files:
        raise DataError(f"no photos ({', '.join(sorted(PHOTO_EXTENSIONS))}) under {folder}")
    return files[: limit or None]


def load_rgb(path: str | Path, short_side: int | None = None,
             long_side: int | None = None) -> torch.Tensor:
    """Decode to (3, H, W) uint8, EXIF-rotated, resized so short (or long) side fits."""
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im).convert("RGB")
        w, h = im.size
        if short_side and min(w, h) < short_side:
            s = short_side / min(w, h)  # only upscale photos too small to crop
            im = im.resize((max(short_side, round(w * s)), max(short_side, round(h * s))),
                           Image.Resampling.BICUBIC)
        if long_side and max(w, h) != long_side:
            s = long_side / max(w, h)
            im = im.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.LANCZOS)
        return torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1)


class PhotoBank:
    """Every photo as a (3, H, W) uint8 tensor on `device`; `batch()` makes random crops."""

    def __init__(self, files: list[Path], crop: int, device: torch.device | str = "cpu",
                 workers: int = 8):
        self.crop = crop
        # Crops start on multiples of `align` and are never mirrored when cached features
        # must line up with them (training/featcache.py); 1: anywhere, mirrored half the time.
        self.align = 1
        with ThreadPoolExecutor(workers) as pool:  # Pillow releases the GIL while decoding
            photos = list(pool.map(lambda p: load_rgb(p, short_side=crop), files))
        self.photos = [p.to(device) for p in photos]
        self.files = files

    def __len__(self) -> int:
        return len(self.photos)

    def batch(self, n: int, gen: torch.Generator) -> torch.Tensor:
        """(n, 3, crop, crop) float in [0, 1]: random photo, random crop, random h-flip."""
        return self.draw(n, gen)[0]

    def draw(self, n: int, gen: torch.Generator
             ) -> tuple[torch.Tensor, tuple[list[int], list[int], list[int]]]:
        """``batch`` and where each crop came from: (photo numbers, tops, lefts)."""
        picks = torch.randint(len(self.photos), (n,), generator=gen).tolist()
        rand = torch.rand(n, 3, generator=gen).tolist()  # CPU draws: no device sync
        crops, tops, lefts, a = [], [], [], self.align
        for i, (ry, rx, rf) in zip(picks, rand, strict=True):
            img = self.photos[i]
            _, h, w = img.shape
            top = int(ry * ((h - self.crop) // a + 1)) * a
            left = int(rx * ((w - self.crop) // a + 1)) * a
            c = img[:, top:top + self.crop, left:left + self.crop]
            crops.append(c.flip(-1) if rf < 0.5 and a == 1 else c)
            tops.append(top)
            lefts.append(left)
        return torch.stack(crops).float().div_(255.0), (picks, tops, lefts)  # (n, 3, S, S)


def load_style_images(paths: list[Path], long_side: int) -> list[torch.Tensor]:
    """Each style image as (1, 3, H, W) float in [0, 1] with its long side = `long_side`."""
    out = []
    for p in paths:
        if not Path(p).is_file():
            raise DataError(f"style image {p} not found")
        out.append(load_rgb(p, long_side=long_side)[None].float() / 255.0)
    return out


def find_style_image(name: str, cfg: TrainConfig, origin: tuple[str, str] | None = None,
                     styles_dir: str | Path | None = None) -> tuple[Path | None, list[str]]:
    """Where style `name`'s painting is, and every place looked at (for the error message).

    In order: the config's `[[styles]]` entry of that name (or of the name it was trained
    under); the file `add-style` recorded (`origin`, from model.edit.style_origins) in
    `styles_dir`, in the data root's `styles/` folder, in the current folder; then
    `NAME.jpg/.png/...` in those two folders.
    """
    trained, image = origin or (name, "")
    names = list(dict.fromkeys([name, trained]))
    by_name = {s.name: s.path for s in cfg.styles}
    paths = [cfg.resolve(by_name[n]) for n in names if n in by_name]
    folders = list(dict.fromkeys(Path(d) for d in (styles_dir, cfg.resolve("styles")) if d))
    if image:
        paths += [f / image for f in folders] + [Path(image)]
    tried = [str(p) for p in paths]
    for path in paths:
        if path.is_file():
            return path, tried
    for folder in folders:
        for n in names:
            tried.append(str(folder / f"{n}.*"))
            for path in sorted(folder.glob(glob.escape(n) + ".*")):
                if path.suffix.lower() in PHOTO_EXTENSIONS and path.is_file():
                    return path, tried
    return None, tried
