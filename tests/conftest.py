"""Shared fixtures: a tiny model the tests build themselves (no downloads, no shared data).

Its γ/β tables are randomised so that every style really looks different; the weights are
otherwise untrained, which is all the service and export tests need.
"""

from __future__ import annotations

from pathlib import Path

import pytest

# The tiny model is the tools' too (the soak exports it): defined there, the tests import
# it from here as before.
from stylebox.samples import (  # noqa: F401
    TINY_STYLES,
    export_tiny_model,
    make_tiny_card,
    make_tiny_generator,
)

ROOT = Path(__file__).resolve().parents[1]  # the repository


def gradient_reach(g, side: int) -> int:
    """How far (px) an output pixel's gradient reaches into the input, statistics fixed (the
    whole image's), over every phase of the generator's grid at the centre of a side x side
    image: what its analytic receptive_radius must bound."""
    import numpy as np
    import torch

    from stylebox.model.network import NormStats

    g = g.double()
    w = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)
    x = torch.rand(1, 3, side, side, dtype=torch.float64)
    collect = NormStats()
    g(x, w, collect)
    given = collect.packed().detach()
    reach = 0
    for c in range(side // 2, side // 2 + g.grid()):  # every phase of the grid
        x = x.detach().requires_grad_(True)
        g(x, w, NormStats(given, torch.ones(1, 1, dtype=torch.float64)))[0, :, c, c].sum() \
            .backward()
        ys, xs = np.nonzero(x.grad.abs().sum((0, 1)).numpy())
        reach = max(reach, np.abs(ys - c).max(), np.abs(xs - c).max())
    return int(reach)


def session_feed(sess, image, weights) -> dict:
    """A raw ORT session's feed: zero statistics and use_stats = 0 (plain instance norm)
    where the graph takes them (model/export.py), nothing more for older graphs."""
    import numpy as np

    feed = {"image": image, "style_weights": weights}
    names = {i.name: i for i in sess.get_inputs()}
    if "norm_stats" in names:
        b = image.shape[0]
        feed |= {"norm_stats": np.zeros((b, names["norm_stats"].shape[1]), np.float32),
                 "use_stats": np.zeros((b, 1), np.float32)}
    return feed


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory) -> Path:
    """A 3-style α=0.25 ONNX model with its card, exported (and parity-checked) once."""
    return export_tiny_model(tmp_path_factory.mktemp("model") / "tiny.onnx")


# A second model to serve beside the tiny one (STYLEBOX_EXTRA_MODELS): narrower (faster),
# with its own styles, one of them shared with the tiny model.
FAST_STYLES = [{"name": "ink", "title": "Ink", "source": "test style D"},
               {"name": "candy", "title": "Candy", "source": "test style A"}]


@pytest.fixture(scope="session")
def fast_onnx(tmp_path_factory) -> Path:
    """A 2-style α=0.125 ONNX model named stylebox-tiny-fast, exported once."""
    from stylebox.model.export import export_onnx

    gen = make_tiny_generator(n_styles=2, alpha=0.125, seed=1)
    card = make_tiny_card(FAST_STYLES, alpha=0.125, generator=gen)
    card.name = "stylebox-tiny-fast"
    path = tmp_path_factory.mktemp("fast") / "fast.onnx"
    export_onnx(gen, card, path, export_size=32)
    return path


# -- engines: the ones this host runs, for what must hold on every engine ---------------------

def host_engines(precisions: tuple[str, ...] = ("f32", "bf16")) -> list:
    """(engine, precision) test parameters for every runtime this host has: ONNX Runtime f32
    everywhere, OpenVINO f32 wherever openvino is installed (any x86 CPU), and OpenVINO bf16
    where the CPU has AMX or AVX512_BF16. A test comparing exact pixels names its engine
    instead; these are for tests whose expectation is computed on the engine under test."""
    from stylebox.service.backends import openvino_installed

    out = [pytest.param(("onnxruntime", "f32"), id="onnxruntime")]
    if openvino_installed():
        from stylebox.service.backends.ov import cpu_precisions

        out += [pytest.param(("openvino", p), id=f"openvino-{p}") for p in precisions
                if p in cpu_precisions()]
    return out


def open_host_engine(path: Path, kind: tuple[str, str]):
    """The engine `host_engines` names, on `path`."""
    from stylebox.service.backends.ort import OrtEngine

    engine, precision = kind
    if engine == "openvino":
        from stylebox.service.backends.ov import OpenVinoEngine

        return OpenVinoEngine(path, precision)
    return OrtEngine(path)


@pytest.fixture(scope="module", params=host_engines())
def host_engine(request, tiny_onnx):
    """The tiny model on each engine and precision this host runs (module-wide)."""
    return open_host_engine(tiny_onnx, request.param)


@pytest.fixture(scope="module")
def engine(tiny_onnx):
    """The tiny model on ONNX Runtime f32 (module-wide): for tests that name their engine.
    A module whose tests must hold on every engine overrides it with `host_engine`."""
    from stylebox.service.backends.ort import OrtEngine

    return OrtEngine(tiny_onnx)


# -- the app: built on an engine and settings the one way ------------------------------------

def make_app(engine, model_path, /, **settings):
    """`create_app(Settings(model_path=..., **settings), engine=engine)`. With engine None the
    app opens its own from the settings at start-up, as a server would. (Positional-only, so
    that Settings' own `engine` field can be passed as a setting.)"""
    from stylebox.service.app import create_app
    from stylebox.service.settings import Settings

    return create_app(Settings(model_path=str(model_path), **settings), engine=engine)


def make_client(engine, model_path, /, **settings):
    """A TestClient on `make_app(engine, model_path, **settings)`. Use it as a context manager
    (`with make_client(...) as c:`) to run the app's lifespan; without `with` it never runs."""
    from fastapi.testclient import TestClient

    return TestClient(make_app(engine, model_path, **settings))


@pytest.fixture(scope="module")
def client(tiny_onnx, engine):
    """A client of the app on `engine` with the default settings, lifespan running
    (module-wide). Modules that need other settings override it with make_client."""
    with make_client(engine, tiny_onnx) as c:
        yield c


# -- images: made on the spot, encoded and decoded the one way ------------------------------

def noise(h: int, w: int, seed: int = 0, channels: int = 3, *, lo: int = 0, hi: int = 256):
    """uint8 (h, w, channels) uniform noise in [lo, hi)."""
    import numpy as np

    return np.random.default_rng(seed).integers(lo, hi, (h, w, channels), dtype=np.uint8)


def encode(image, fmt: str = "PNG", **kw) -> bytes:
    """An array (H, W[, C]) or a PIL image, encoded in `fmt` (Pillow's name)."""
    import io

    from PIL import Image

    im = image if isinstance(image, Image.Image) else Image.fromarray(image)
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def png(h: int = 16, w: int = 16, seed: int | None = None) -> bytes:
    """A PNG of h x w pixels: grey, or noise with a seed."""
    import numpy as np

    rgb = np.full((h, w, 3), 120, np.uint8) if seed is None else noise(h, w, seed)
    return encode(rgb)


def pixels(data: bytes):
    """Encoded image bytes -> its pixels as an array (mode kept: RGB, RGBA, L ...)."""
    import io

    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return np.asarray(im)


def env_without(tmp: Path, *packages: str) -> dict[str, str]:
    """This environment as an install without `packages` (e.g. torch: no train extra), for a
    subprocess: a stand-in for each, first on PYTHONPATH, whose import raises what a missing
    package raises. Children of the subprocess inherit it. STYLEBOX_* settings are dropped."""
    import os

    stubs = tmp / "not-installed"
    for name in packages:
        (stubs / name).mkdir(parents=True, exist_ok=True)
        (stubs / name / "__init__.py").write_text(
            f"raise ModuleNotFoundError(\"No module named '{name}'\", name={name!r})\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("STYLEBOX_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(stubs), env.get("PYTHONPATH")) if p)
    return env


# -- training fixtures: tiny photos, style images and a fake VGG file made on the spot ---------

TINY_TRAIN_LAYERS = {"content_layers": ["relu1_2"], "style_layers": ["relu1_1", "relu2_1"]}


def random_vgg(layers: list[str], seed: int = 0):
    """A randomly initialised VGG up to the deepest of `layers` (no weights, no downloads)."""
    import torch

    from stylebox.training.vgg import VGG_LAYERS, VGGFeatures, vgg19_features

    torch.manual_seed(seed)
    return VGGFeatures(layers, vgg19_features(max(VGG_LAYERS[n] for n in layers) + 1))


def write_fake_vgg(path: Path, deepest: str = "relu2_1", seed: int = 0) -> Path:
    """A random fp16 state dict in the format of ../shared/data/vgg (torchvision keys)."""
    import torch

    vgg = random_vgg([deepest], seed=seed)
    torch.save({k: v.half() for k, v in vgg.features.state_dict().items()}, path)
    return path


def make_train_data(root: Path, n_photos: int = 6, size: int = 48) -> Path:
    """Photos (png/jpg/webp, one smaller than the crop) and two style images under `root`."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    (root / "photos" / "sub").mkdir(parents=True, exist_ok=True)
    (root / "styles").mkdir(exist_ok=True)
    yy, xx = np.mgrid[0:size, 0:size + 8]
    for i in range(n_photos):
        base = np.stack([(xx * (i + 1)) % 256, (yy * 3) % 256, (xx + yy + 40 * i) % 256], -1)
        noise = rng.integers(0, 30, base.shape)
        img = Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))
        ext = ["png", "jpg", "webp"][i % 3]
        folder = root / "photos" / ("sub" if i == 0 else "")
        img.save(folder / f"p{i}.{ext}")
    Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(
        root / "photos" / "small.png")  # smaller than the crop: upscaled, not skipped
    stripes = np.zeros((64, 64, 3), np.uint8)
    stripes[:, ::8] = (255, 40, 0)
    stripes[:, 1::8] = (255, 200, 0)
    Image.fromarray(stripes).save(root / "styles" / "stripes.png")
    checker = ((np.indices((64, 64)).sum(0) // 4) % 2 * 255).astype(np.uint8)
    Image.fromarray(np.stack([checker, 255 - checker, checker // 2], -1)).save(
        root / "styles" / "checker.png")
    write_fake_vgg(root / "vgg.pth")
    return root


def write_train_config(root: Path, **overrides) -> Path:
    """A TOML config for a few CPU steps on make_train_data(root)."""
    import json

    values = {
        "name": "tiny", "data_root": str(root), "photos": "photos", "vgg_weights": "vgg.pth",
        "alpha": 0.25, "n_residual": 1, "steps": 4, "batch_size": 2, "image_size": 32,
        "style_size": 48, "lr": 1e-2, "log_every": 1, "ckpt_every": 100, "device": "cpu",
        **TINY_TRAIN_LAYERS, **overrides,
    }
    lines = [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    for name, file in (("stripes", "stripes.png"), ("checker", "checker.png")):
        lines += ["[[styles]]", f'name = "{name}"', f'path = "styles/{file}"',
                  f'title = "{name.title()}"']
    path = root / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def base_run(tmp_path):
    """A 3-step plain training run whose checkpoint fine-tuning tests start from:
    (config, VGG, tmp_path with base/last.pt)."""
    from stylebox.training.config import TrainConfig
    from stylebox.training.loop import train

    data = make_train_data(tmp_path / "data")
    cfg = TrainConfig.load(write_train_config(data, steps=3))
    vgg = random_vgg(cfg.content_layers + cfg.style_layers)
    train(cfg, tmp_path / "base", vgg=vgg, progress=False)
    return cfg, vgg, tmp_path


@pytest.fixture(autouse=True)
def _restore_root_logging():
    """`stylebox serve` run in-process configures the root logger (level, handler) for the
    whole process; put it back after each test so later tests see what a fresh command does."""
    import logging

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(autouse=True, scope="module")
def _restore_pillow_pixel_limit():
    """`create_app` sets Pillow's process-global bomb guard to its max_pixels (small in some
    tests); put it back after each module so tests do not depend on the order they run in."""
    from PIL import Image

    before = Image.MAX_IMAGE_PIXELS
    yield
    Image.MAX_IMAGE_PIXELS = before


def shift_error(g, x, w, border: int) -> float:
    """Mean |change| of generator `g`'s output when the photo `x` (B, 3, H, W) moves one
    pixel, away from `border` px at the edges: how much a 1-px pan re-draws."""
    import torch

    with torch.no_grad():
        a, b = g(x[..., :, :-1], w), g(x[..., :, 1:], w)
    rows, d = slice(border, -border), border
    return (a[..., rows, d + 1:-d] - b[..., rows, d:-d - 1]).abs().mean().item()
