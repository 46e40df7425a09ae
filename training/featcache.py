"""Cached content features: the photos' VGG features at the content layers, computed once.

The content target of a training step is the photo's own VGG features, and the photo never
changes, so a step need not compute them again (a known trick of fast style transfer
training). The cache holds every training photo's features at the content layers, computed
on the whole photo as the photo bank holds it (short side = the crop size), as float16 in one
file that is memory-mapped, so a run reads only what its crops need and several runs share
the pages. A batch then cuts each crop's features out of its photo's.

Two consequences, both documented where the setting is (docs/training.md, *Step cost*):

- crops start on even pixels (the features have one pixel per 2 x 2 photo pixels at relu2_2;
  per 2^k at deeper layers) and are not mirrored, because a mirrored photo's features are not
  the mirrored features;
- inside a crop the target equals the crop's own features except within a few pixels of its
  edge, where the whole photo gives the features real context instead of zero padding.

``manifest.json`` records what the features were made from: the VGG weights file (size and
a hash of it), the layers, the crop size and every photo (path, size, modification time).
A cache that does not match the run is refused with the reason, never used stale.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from stylebox.errors import UserError
from stylebox.training.config import VGG_LAYERS
from stylebox.training.vgg import VGGFeatures

VERSION = 1
_POOLS = (4, 9, 18, 27)  # the max-pool indices of vgg19().features


class CacheError(UserError):
    """A content cache that does not match the run, or cannot be written."""


def stride(layer: str) -> int:
    """Photo pixels per feature pixel at `layer`: 2 per max-pool before it."""
    return 2 ** sum(p < VGG_LAYERS[layer] for p in _POOLS)


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def describe(files: list[Path], crop: int, layers: list[str], vgg_file: str) -> dict:
    """What a cache for this run must have been made from (the manifest without shapes)."""
    photos = []
    for p in files:
        st = os.stat(p)
        photos.append([str(Path(p).resolve()), st.st_size, st.st_mtime_ns])
    vgg = Path(vgg_file)
    return {"version": VERSION, "layers": list(layers), "crop": crop,
            "vgg": {"file": vgg.name, "size": vgg.stat().st_size, "sha256": file_digest(vgg)}
            if vgg.is_file() else {"file": str(vgg_file)},
            "photos": photos}


def _mismatch(have: dict, want: dict) -> str:
    for key in ("version", "layers", "crop", "vgg"):
        if have.get(key) != want[key]:
            return f"{key}: cached {have.get(key)!r}, this run {want[key]!r}"
    cached = {p[0]: p for p in have.get("photos", [])}
    for p in want["photos"]:
        if p[0] not in cached:
            return f"photo {p[0]} is not in it"
        if cached[p[0]] != p:
            return f"photo {p[0]} changed since (size or modification time)"
    return ""


@dataclass
class Entry:
    offset: int  # in float16 elements, into features.bin
    shape: tuple[int, int, int]  # (C, h, w) of one layer of one photo


class ContentCache:
    """Features of every photo at each content layer, memory-mapped from `folder`."""

    def __init__(self, folder: Path, manifest: dict):
        self.folder, self.manifest = folder, manifest
        self.layers: list[str] = manifest["layers"]
        self.data = np.memmap(folder / "features.bin", dtype=np.float16, mode="r")
        self.entries = [[Entry(e[0], tuple(e[1])) for e in row] for row in manifest["entries"]]
        self.rows: list[int] = []  # the cache's row of each of the run's photos, in order

    def for_photos(self, files: list[Path]) -> ContentCache:
        index = {p[0]: i for i, p in enumerate(self.manifest["photos"])}
        self.rows = [index[str(Path(f).resolve())] for f in files]
        return self

    @classmethod
    def open(cls, folder: str | Path, files: list[Path], crop: int, layers: list[str],
             vgg_file: str, vgg: VGGFeatures | None = None, progress: bool = False
             ) -> ContentCache:
        """The cache in `folder` for these photos (built first when the folder holds none;
        with `vgg` only: the caller's network makes the features). CacheError when it was
        made from anything else."""
        folder = Path(folder)
        want = describe(files, crop, layers, vgg_file)
        man = folder / "manifest.json"
        if not man.is_file():
            if vgg is None:
                raise CacheError(f"no content cache in {folder}")
            build(folder, files, crop, vgg, want, progress)
        have = json.loads(man.read_text())
        why = _mismatch(have, want)
        if why:
            raise CacheError(f"the content cache in {folder} was made for another run ({why}); "
                             "delete the folder to rebuild it, or set content_cache to a new "
                             "folder")
        return cls(folder, have).for_photos(files)

    def crops(self, picks: list[int], tops: list[int], lefts: list[int], size: int,
              device: torch.device) -> dict[str, torch.Tensor]:
        """{layer: (B, C, size/s, size/s) float32}: the features of crops of the run's photos
        `picks` (`tops`, `lefts` on multiples of the layers' stride), cut from the photos'."""
        out = {}
        for li, layer in enumerate(self.layers):
            s = stride(layer)
            cuts = []
            for i, top, left in zip(picks, tops, lefts, strict=True):
                e = self.entries[self.rows[i]][li]
                c, h, w = e.shape
                full = self.data[e.offset:e.offset + c * h * w].reshape(c, h, w)
                cuts.append(torch.from_numpy(np.ascontiguousarray(
                    full[:, top // s:top // s + size // s, left // s:left // s + size // s])))
            out[layer] = torch.stack(cuts).to(device=device, dtype=torch.float32)
        return out


@torch.no_grad()
def build(folder: Path, files: list[Path], crop: int, vgg: VGGFeatures, manifest: dict,
          progress: bool = False) -> None:
    """Compute and write every photo's features (float32 VGG, stored as float16), then the
    manifest last, so an interrupted build leaves no usable cache."""
    from stylebox.training.data import load_rgb

    folder.mkdir(parents=True, exist_ok=True)
    layers = manifest["layers"]
    entries, offset = [], 0
    part = folder / "features.bin.part"
    device = next(vgg.parameters()).device
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(files), unit="photo", desc="content cache")
    with open(part, "wb") as f:
        for p in files:
            x = load_rgb(p, short_side=crop)[None].float() / 255.0  # (1, 3, H, W)
            feats = vgg(x.to(device), layers)  # float32: no autocast around this call
            row = []
            for n in layers:
                a = feats[n][0].float().cpu().numpy().astype(np.float16)  # (C, h, w)
                f.write(a.tobytes())
                row.append([offset, list(a.shape)])
                offset += a.size
            entries.append(row)
            if bar:
                bar.update(1)
    if bar:
        bar.close()
    os.replace(part, folder / "features.bin")
    tmp = folder / "manifest.json.part"
    tmp.write_text(json.dumps({**manifest, "entries": entries}))
    os.replace(tmp, folder / "manifest.json")
