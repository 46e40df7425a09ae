"""What the tools feed the service when no real input is given: synthetic photos and clip
frames (numpy and Pillow, no torch), and the tiny random model (needs the train extra).

One maker, `synthetic_photo`, for every tool: the benchmarks' and the soak's uploads, the
tiling demo's large scene, the video and live clips' frames. tests/conftest.py takes the tiny
model from here; the tools never import the tests.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Literal

import numpy as np

Scene = Literal["gradient", "landscape", "noise"]

TINY_STYLES = [
    {"name": "candy", "title": "Candy", "source": "test style A"},
    {"name": "mosaic", "title": "Mosaic", "source": "test style B"},
    {"name": "udnie", "title": "Udnie", "source": "test style C"},
]


def synthetic_photo(width: int, height: int, *, scene: Scene = "gradient", seed: int = 0,
                    frame: int = 0, shapes: int = 0, square: bool = False,
                    grain: float = 0.0) -> np.ndarray:
    """uint8 (height, width, 3), deterministic for the same arguments. Drawn in this order:

    scene: "gradient" (red across, green down, blue along the diagonal, each wrapping at 256;
        `frame` drifts red by 3 and green by 2 levels per frame, `seed` shifts blue by 97),
        "landscape" (a sky gradient over a wavy horizon and ground) or "noise" (every byte
        uniform, drawn from `seed`: no structure for a codec or a cache to exploit);
    shapes: that many discs and outlined boxes, random colours, up to 8 % of the short side;
    square: a yellow square a quarter of the short side, moved by `frame` (a clip's object);
    grain: Gaussian noise of this sigma in grey levels (a camera's grain, a JPEG's cost).
    The random draws (noise, shapes, grain, in that order) all come from one `seed`.
    """
    rng = np.random.default_rng(seed)
    if scene != "noise":
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)  # (H, W) each
    if scene == "gradient":
        rgb = np.stack([(xx / max(1, width) * 255 + 3 * frame) % 256,
                        (yy / max(1, height) * 255 + 2 * frame) % 256,
                        ((xx + yy) / max(1, width + height) * 255 + 97 * seed) % 256], -1)
    elif scene == "landscape":
        t = yy / height
        sky = np.stack([90 + 120 * t, 140 + 80 * t, 230 - 60 * t], -1)
        ground = np.stack([60 + 40 * np.sin(xx / 97.0), 110 + 30 * t, 40 + 0 * t], -1)
        horizon = yy > height * (0.55 + 0.05 * np.sin(xx / 400.0))
        rgb = np.where(horizon[..., None], ground, sky)
    elif scene == "noise":
        rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    else:
        raise ValueError(f"scene {scene!r}: want gradient, landscape or noise")
    if shapes:
        from PIL import Image, ImageDraw

        im = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(im)
        s = min(height, width)
        for _ in range(shapes):
            x, y, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(0.01, 0.08) * s
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            if rng.random() < 0.5:
                draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
            else:
                draw.rectangle((x - r, y - r / 2, x + r, y + r / 2), fill=colour,
                               outline=(20, 20, 20), width=max(1, s // 400))
        rgb = np.asarray(im).astype(np.float32)
    if square:
        side = max(2, min(width, height) // 4)
        x0 = (frame * 7) % max(1, width - side)
        y0 = (frame * 3) % max(1, height - side)
        rgb = np.array(rgb)  # writable, whatever the scene gave
        rgb[y0:y0 + side, x0:x0 + side] = (240, 240, 30)
    if grain:
        rgb = rgb + rng.normal(0, grain, rgb.shape)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    """`rgb` (H, W, 3) uint8 as JPEG bytes."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def photo_jpeg(width: int, height: int, seed: int = 0, quality: int = 90,
               grain: float = 10.0) -> bytes:
    """A photo-like upload: the gradient with grain, as JPEG (a 4K one is ~1-3 MB)."""
    return jpeg(synthetic_photo(width, height, seed=seed, grain=grain), quality)


def make_tiny_generator(n_styles: int = 3, alpha: float = 0.25, seed: int = 0, blur: int = 0,
                        **variant):
    """A 2-block generator with random visible styles; `variant`: separable, resize, widths."""
    import torch

    from stylebox.model.network import Generator, GeneratorConfig

    torch.manual_seed(seed)
    return Generator(GeneratorConfig(n_styles=n_styles, alpha=alpha, n_residual=2, blur=blur,
                                     **variant)).eval().randomize_styles()


def make_tiny_card(styles=TINY_STYLES, alpha: float = 0.25, generator=None):
    """The tiny model's card; with `generator`, its arch (a variant's knobs included)."""
    from stylebox.model.card import ModelCard

    arch = generator.cfg.arch() if generator is not None else {
        "n_residual": 2, "base_channels": [32, 64, 128]}
    return ModelCard(name="stylebox-tiny", version="test", alpha=alpha, styles=list(styles),
                     arch=arch)


def export_tiny_model(path: Path) -> Path:
    """The tiny 3-style α=0.25 model (random weights: loading, not looks, matters) as ONNX
    with its card, exported and parity-checked. Needs the train extra."""
    from stylebox.model.export import export_onnx

    export_onnx(make_tiny_generator(), make_tiny_card(), path, export_size=32)
    return path
