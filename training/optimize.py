"""`stylebox optimize`: the best quality for one photo, by Gatys et al.'s per-image optimisation.

    stylebox optimize photo.jpg --style candy -o candy.jpg
    stylebox optimize photo.jpg --painting my-painting.jpg -o mine.jpg --time-limit 120

A feed-forward model (Johnson et al. 2016) is trained to do well on average over many
photos; for one photo, optimising the pixels themselves against the same loss (Gatys et al.
2016) does better. Here the optimisation starts from the trained model's own output, so it
only has to close the gap, and it uses the loss the model was trained with: the
checkpoint's training config gives the VGG-19 weights, the style and content layers, their
weights and the style image size (training/losses.py). The style is one of the checkpoint's
styles (its painting is found as `stylebox eval` finds it) or any painting file (started
from the model's nearest style by Gram distance). The losses printed at the start and the
end are the unweighted relative errors that `stylebox eval` reports.

The optimiser is L-BFGS, one loss evaluation per iteration, on the pixels (docs/optimize.md
compares it with Adam per second of CPU). It stops at --iterations or --time-limit,
whichever comes first, and returns the best image it has seen.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from stylebox.errors import UserError, doc_parser, need_file
from stylebox.model.checkpoint import load_checkpoint
from stylebox.model.edit import style_origins
from stylebox.model.network import one_hot
from stylebox.training.accel import autocast, use_amp
from stylebox.training.config import ConfigError, TrainConfig
from stylebox.training.data import find_style_image, load_rgb
from stylebox.training.losses import PerceptualLoss
from stylebox.training.vgg import VGGFeatures

DEFAULT_CHECKPOINT = "models/checkpoints/stylebox-a0.25-10styles.pt"
DEFAULT_ITERATIONS = 300
DEFAULT_TIME_LIMIT_S = 170.0


class OptimizeError(UserError):
    """A bad optimize argument: an unknown style, a painting that cannot be read, ..."""


class OptimizeCancelled(Exception):  # noqa: N818 (a request, not a failure)
    """The caller's `cancelled()` returned True; raised between two iterations."""


@dataclass
class OptimizeSettings:
    """How the pixels are optimised; the defaults are the measured choice (docs/optimize.md)."""

    optimizer: str = "lbfgs"  # "lbfgs" (one evaluation per iteration) or "adam"
    lr: float = 1.0  # L-BFGS: the step scale (1 = its own estimate); Adam: per-pixel step
    history: int = 20  # L-BFGS curvature pairs kept
    content_weight: float | None = None  # None: the checkpoint's training weight
    style_weight: float | None = None
    amp: str | None = None  # bf16 autocast "auto" | "on" | "off"; None: the config's
    progress_every: int = 5  # call progress() every this many iterations (and at the end)


@dataclass
class OptimizeProgress:
    iteration: int  # iterations done
    iterations: int  # the iteration budget
    style: float  # the current image's style and content loss (unweighted, as eval scores)
    content: float
    loss: float  # the weighted total that is optimised
    eta_s: float  # seconds to the first budget that will stop it
    seconds: float  # seconds of optimisation so far
    _image: Callable[[], np.ndarray] = field(repr=False, default=lambda: np.zeros((1, 1, 3)))

    def image(self) -> np.ndarray:
        """The current image, uint8 (H, W, 3): computed only when asked (a preview)."""
        return self._image()


@dataclass
class OptimizeResult:
    image: np.ndarray  # uint8 (H, W, 3): the best image seen
    style: str  # the style name, or the painting's file name
    start_from: str  # the checkpoint style whose feed-forward output was the start
    start_style: float  # the feed-forward output's style / content loss
    start_content: float
    style_loss: float  # the result's
    content_loss: float
    iterations: int
    seconds: float  # the whole call: loading, targets, optimisation
    stopped: str  # "iterations" or "time"

    @property
    def style_ratio(self) -> float:
        return self.style_loss / self.start_style if self.start_style else 0.0


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) -> float (1, 3, H, W) in [0, 1]."""
    return torch.from_numpy(np.array(rgb)).permute(2, 0, 1)[None].float() / 255


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float (1, 3, H, W) in [0, 1] -> uint8 (H, W, 3), rounded."""
    return x[0].detach().float().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()


@torch.no_grad()
def measure(loss_fn: PerceptualLoss, x: torch.Tensor, ref: dict[str, torch.Tensor],
            style_idx: torch.Tensor) -> tuple[float, float]:
    """(style, content) of image x in fp32: the unweighted terms `stylebox eval` reports."""
    feats = loss_fn.vgg(x.float().contiguous())
    return loss_fn.style_loss(feats, style_idx).item(), loss_fn.content_loss(feats, ref).item()


def _optimizer(s: OptimizeSettings, pixels: torch.Tensor) -> torch.optim.Optimizer:
    if s.optimizer == "lbfgs":
        # max_iter=1: one loss evaluation per step() call, so the budgets and the cancel
        # callback are checked every evaluation; the curvature history persists across calls.
        return torch.optim.LBFGS([pixels], lr=s.lr, max_iter=1, history_size=s.history)
    if s.optimizer == "adam":
        return torch.optim.Adam([pixels], lr=s.lr)
    raise OptimizeError(f"optimizer must be 'lbfgs' or 'adam', not {s.optimizer!r}")


def optimize_image(loss_fn: PerceptualLoss, start: torch.Tensor, ref: dict[str, torch.Tensor],
                   style_idx: torch.Tensor, *, iterations: int, deadline: float | None = None,
                   settings: OptimizeSettings | None = None, amp: bool = False,
                   progress: Callable[[OptimizeProgress], None] | None = None,
                   cancelled: Callable[[], bool] | None = None
                   ) -> tuple[torch.Tensor, int, str]:
    """Optimise the pixels of `start` (1, 3, H, W) in [0, 1] against loss_fn (targets set,
    weights as trained) and the photo's content features `ref`; stop after `iterations` or
    before `deadline` (time.monotonic()). (the best image seen, iterations done, why it
    stopped). The loss must hold one style target row, picked by `style_idx` (1,)."""
    s = settings or OptimizeSettings()
    # NHWC storage, seen as NCHW: oneDNN's fast layout, and a contiguous leaf for L-BFGS
    # (which flattens the gradient with view(-1)).
    pixels = start.detach().float().permute(0, 2, 3, 1).contiguous().requires_grad_(True)
    opt = _optimizer(s, pixels)
    precision = autocast(start.device, amp)
    best: list = [math.inf, start.detach().clone()]
    last: dict[str, float] = {}
    t0, done = time.monotonic(), 0

    def closure() -> torch.Tensor:
        opt.zero_grad()
        x = pixels.permute(0, 3, 1, 2)  # (1, 3, H, W), channels_last strides
        with precision:
            parts = loss_fn.terms(x, x, style_idx, ref)[0]
        parts["loss"].backward()
        last.update({k: parts[k].item() for k in ("loss", "style", "content")})
        if last["loss"] < best[0]:  # the image this loss belongs to: before the step
            best[:] = [last["loss"], x.detach().clone()]
        return parts["loss"]

    stopped = "iterations"
    while done < iterations:
        if cancelled is not None and cancelled():
            raise OptimizeCancelled(f"cancelled after {done} iterations")
        per_iter = (time.monotonic() - t0) / done if done else 0.0
        if deadline is not None and time.monotonic() + per_iter > deadline:
            stopped = "time"  # the next iteration would end past the deadline
            break
        opt.step(closure)
        with torch.no_grad():
            pixels.clamp_(0, 1)  # keep a valid image (a projection after each step)
        done += 1
        if progress is not None and (done % s.progress_every == 0 or done == iterations):
            progress(_progress(done, iterations, last, t0, deadline, pixels))
    if progress is not None and stopped == "time" and done % s.progress_every:
        progress(_progress(done, iterations, last, t0, deadline, pixels))  # the last state
    return best[1], done, stopped


def _progress(done: int, iterations: int, last: dict[str, float], t0: float,
              deadline: float | None, pixels: torch.Tensor) -> OptimizeProgress:
    now = time.monotonic()
    eta = (now - t0) / done * (iterations - done)
    if deadline is not None:
        eta = min(eta, max(0.0, deadline - now))
    snapshot = pixels.detach().clone()  # (1, H, W, 3): this iteration's, whenever asked
    return OptimizeProgress(done, iterations, last["style"], last["content"], last["loss"],
                            eta, now - t0, lambda: to_uint8(snapshot.permute(0, 3, 1, 2)))


def checkpoint_config(state: dict, path: str | Path, data_root: str | Path | None) -> TrainConfig:
    """The checkpoint's training config, its data root from `data_root` if given (else
    $STYLEBOX_DATA, else the one it recorded)."""
    try:
        cfg = TrainConfig.from_checkpoint(state, path)
    except ConfigError as e:
        raise OptimizeError(str(e)) from None
    cfg = cfg.replace(data_root=str(data_root)) if data_root is not None else cfg
    origin = ("from data_root" if data_root is not None else "from STYLEBOX_DATA"
              if os.environ.get("STYLEBOX_DATA") else "recorded in the checkpoint's config")
    cfg.check_data_root([cfg.vgg_weights] if cfg.vgg_weights != "torchvision" else [], origin)
    return cfg


def style_painting(name: str, cfg: TrainConfig, card) -> Path:
    """Style `name`'s painting, found as training and `stylebox eval` find it."""
    if name not in card.style_names:
        raise OptimizeError(f"style {name!r} is not in the checkpoint "
                            f"({', '.join(card.style_names)}); or pass --painting FILE")
    path, tried = find_style_image(name, cfg, style_origins(card)[name])
    if path is None:
        raise OptimizeError(f"no painting found for style {name!r} (looked for "
                            f"{', '.join(tried)}); pass --data-root DIR or --painting FILE")
    return path


def read_painting(path: str | Path, long_side: int) -> torch.Tensor:
    """(1, 3, H, W) in [0, 1], long side `long_side`; OptimizeError if it is not an image."""
    path = Path(path)
    if not path.is_file():
        raise OptimizeError(f"painting {str(path)!r} does not exist")
    try:
        return load_rgb(path, long_side=long_side)[None].float() / 255.0
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise OptimizeError(f"painting {str(path)!r} cannot be read as an image ({e})") from None


def fit_photo(photo: np.ndarray, max_side: int) -> np.ndarray:
    """uint8 (H, W, 3), downscaled so its long side is at most `max_side` (never upscaled)."""
    if photo.ndim != 3 or photo.shape[2] != 3 or photo.dtype != np.uint8:
        raise OptimizeError(f"the photo must be uint8 (H, W, 3) RGB, got {photo.dtype} "
                            f"{tuple(photo.shape)}")
    h, w = photo.shape[:2]
    if max(h, w) > max_side:
        s = max_side / max(h, w)
        im = Image.fromarray(photo).resize((max(1, round(w * s)), max(1, round(h * s))),
                                           Image.Resampling.LANCZOS)
        photo = np.asarray(im)
    if min(photo.shape[:2]) < 16:
        raise OptimizeError(f"the photo is too small ({photo.shape[1]}x{photo.shape[0]} "
                            "after fitting to --max-side): each side must be >= 16 px")
    return photo


@torch.no_grad()
def nearest_style(loss_fn: PerceptualLoss, cfg: TrainConfig, card, painting: torch.Tensor,
                  ) -> int:
    """The checkpoint style whose painting's Grams are nearest to `painting`'s (the relative
    Gram distance of training/add_style.py), among those whose painting is found; 0 if none.
    Compared at half the style size: only a choice of starting point rests on it."""
    from stylebox.training.add_style import nearest_style as closest
    from stylebox.training.data import load_style_images

    origins = style_origins(card)
    known = [(i, find_style_image(s.name, cfg, origins[s.name])[0])
             for i, s in enumerate(card.styles)]
    known = [(i, p) for i, p in known if p is not None]
    if not known:
        return 0
    size = max(16, cfg.style_size // 2)
    probe = PerceptualLoss(loss_fn.vgg, loss_fn.content_layers, loss_fn.style_layers)
    small = torch.nn.functional.interpolate(painting, scale_factor=0.5, mode="area")
    probe.set_style_targets(load_style_images([p for _, p in known], size) + [small])
    k, _ = closest(probe, len(known), list(range(len(known))))
    return known[k][0]


def build_loss(cfg: TrainConfig, settings: OptimizeSettings, painting: torch.Tensor,
               vgg: VGGFeatures | None = None) -> PerceptualLoss:
    """Training's loss (layers, weights, VGG) at full resolution, fp32 Grams, one target."""
    loss_fn = PerceptualLoss.from_config(cfg, vgg, measure=True)
    loss_fn.wc = cfg.content_weight if settings.content_weight is None else settings.content_weight
    loss_fn.ws = cfg.style_weight if settings.style_weight is None else settings.style_weight
    loss_fn.vgg.to(memory_format=torch.channels_last)  # oneDNN's fast layout (training's too)
    loss_fn.set_style_targets([painting])
    return loss_fn


def optimize_photo(photo: np.ndarray, checkpoint: str | Path, *, style: str | None = None,
                   painting: str | Path | None = None, data_root: str | Path | None = None,
                   max_side: int = 512, iterations: int = DEFAULT_ITERATIONS,
                   time_limit_s: float | None = DEFAULT_TIME_LIMIT_S,
                   progress: Callable[[OptimizeProgress], None] | None = None,
                   cancelled: Callable[[], bool] | None = None,
                   settings: OptimizeSettings | None = None,
                   vgg: VGGFeatures | None = None) -> OptimizeResult:
    """`photo` (uint8 (H, W, 3) RGB) in `style` of `checkpoint` (or after `painting`),
    optimised from the checkpoint's feed-forward output. `time_limit_s` bounds the whole
    call (loading included); `vgg` replaces the config's VGG file (tests)."""
    t0 = time.monotonic()
    deadline = t0 + time_limit_s if time_limit_s else None
    s = settings or OptimizeSettings()
    if (style is None) == (painting is None):
        raise OptimizeError("give exactly one of a style name (--style) and a painting file "
                            "(--painting)")
    if iterations < 1:
        raise OptimizeError("iterations must be >= 1")
    photo = fit_photo(photo, max_side)
    generator, card, state = load_checkpoint(checkpoint)
    cfg = checkpoint_config(state, checkpoint, data_root)
    path = style_painting(style, cfg, card) if style is not None else Path(painting)
    target = read_painting(path, cfg.style_size)  # (1, 3, h, w)
    loss_fn = build_loss(cfg, s, target, vgg)
    index = card.index(style) if style is not None else nearest_style(loss_fn, cfg, card, target)
    x = to_tensor(photo)  # (1, 3, H, W)
    with torch.no_grad():
        start = generator.eval()(x, one_hot(index, card.n_styles))  # the feed-forward output
        ref = loss_fn.vgg(x, loss_fn.ref_layers)  # the photo's content features, once
    idx = torch.zeros(1, dtype=torch.long)
    start_style, start_content = measure(loss_fn, start, ref, idx)
    amp = use_amp(torch.device("cpu"), s.amp or cfg.amp)
    out, done, stopped = optimize_image(loss_fn, start, ref, idx, iterations=iterations,
                                        deadline=deadline, settings=s, amp=amp,
                                        progress=progress, cancelled=cancelled)
    style_loss, content_loss = measure(loss_fn, out, ref, idx)
    return OptimizeResult(to_uint8(out), style or path.name, card.style_names[index],
                          start_style, start_content, style_loss, content_loss, done,
                          time.monotonic() - t0, stopped)


class _Bar:
    """A tqdm bar on stderr showing the losses and the time left; a no-op when disabled."""

    def __init__(self, total: int, enabled: bool):
        self.bar = None
        if enabled:
            from tqdm import tqdm

            # No tqdm estimate of the time left: the time limit usually comes first (eta).
            self.bar = tqdm(total=total, unit="it", dynamic_ncols=True, desc="optimize",
                            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}"
                                       "{postfix}]")

    def __call__(self, p: OptimizeProgress) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(f"style {p.style:.4f} content {p.content:.4f} "
                                     f"eta {p.eta_s:.0f} s", refresh=False)
            self.bar.update(p.iteration - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def main(argv: list[str] | None = None) -> int:
    p = doc_parser("stylebox optimize", __doc__)
    p.add_argument("photo", help="the photo to stylize")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--style", help="a style of the checkpoint, by name")
    which.add_argument("--painting", help="or a painting file to take the style from")
    p.add_argument("-o", "--out", required=True, help="image file to write (.jpg, .png, ...)")
    p.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT,
                   help=f"training checkpoint (.pt) to start from (default {DEFAULT_CHECKPOINT})")
    p.add_argument("--data-root", help="folder with vgg/ and styles/ (default: $STYLEBOX_DATA, "
                   "else the checkpoint's)")
    p.add_argument("--max-side", type=int, default=512,
                   help="downscale the photo so its long side is at most this (default 512)")
    p.add_argument("--iterations", type=int, default=DEFAULT_ITERATIONS,
                   help=f"at most this many iterations (default {DEFAULT_ITERATIONS})")
    p.add_argument("--time-limit", type=float, default=DEFAULT_TIME_LIMIT_S,
                   help=f"stop within this many seconds, loading included (default "
                   f"{DEFAULT_TIME_LIMIT_S:g}; 0 = none)")
    p.add_argument("--optimizer", choices=("lbfgs", "adam"), default="lbfgs")
    p.add_argument("--lr", type=float, help="step size (default: 1 for lbfgs, 0.02 for adam)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if args.max_side < 16 or args.iterations < 1:
        p.error("--max-side must be >= 16 and --iterations >= 1")
    need_file(args.photo, "photo")
    need_file(args.checkpoint, "checkpoint")
    try:
        with Image.open(args.photo) as im:
            photo = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    except (UnidentifiedImageError, OSError) as e:
        raise OptimizeError(f"photo {args.photo!r} cannot be read as an image ({e})") from None
    lr = args.lr if args.lr is not None else (1.0 if args.optimizer == "lbfgs" else 0.02)
    bar = _Bar(args.iterations, not args.no_progress)
    try:
        r = optimize_photo(photo, args.checkpoint, style=args.style, painting=args.painting,
                           data_root=args.data_root, max_side=args.max_side,
                           iterations=args.iterations, time_limit_s=args.time_limit or None,
                           progress=bar, settings=OptimizeSettings(optimizer=args.optimizer,
                                                                   lr=lr))
    finally:
        bar.close()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(r.image).save(args.out, quality=95)
    print(f"feed-forward ({r.start_from}): style {r.start_style:.4f}, content "
          f"{r.start_content:.4f}\noptimized ({r.style}): style {r.style_loss:.4f} "
          f"(x{r.style_ratio:.2f}), content {r.content_loss:.4f}; {r.iterations} iterations "
          f"in {r.seconds:.0f} s (stopped by {r.stopped})\nwrote {args.out} "
          f"({r.image.shape[1]}x{r.image.shape[0]})")
    return 0
