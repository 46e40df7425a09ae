"""The training loop: all styles share one generator, every batch mixes styles.

Resumable: `OUT/last.pt` holds model, optimizer, step and card, and the step runner
(training/runner.py) reseeds the data stream every step, so stopping and resuming gives the
same weights as one uninterrupted run. Runs on CPU (tests), one GPU, or several with
`torchrun` (DistributedDataParallel; NCCL on CUDA, gloo on CPU).
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from stylebox.errors import UserError
from stylebox.model.card import ModelCard
from stylebox.model.checkpoint import (
    build_generator,
    load_generator,
    read_checkpoint,
    save_checkpoint,
)
from stylebox.model.edit import is_style_table
from stylebox.model.surgery import fit_head, transplant
from stylebox.training.accel import autocast, machine_summary, use_amp
from stylebox.training.config import TrainConfig
from stylebox.training.data import PhotoBank, list_photos, load_style_images
from stylebox.training.distill import Teachers
from stylebox.training.featcache import ContentCache, stride
from stylebox.training.losses import PerceptualLoss
from stylebox.training.modes import Batch, Step
from stylebox.training.runner import Dist, RunSettings, any_rank, pick_device, run_steps
from stylebox.training.vgg import VGGFeatures

CKPT_NAME = "last.pt"


class TrainError(UserError):
    pass


def _setup_dist(device_kind: str) -> Dist:
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Dist()
    backend = "nccl" if device_kind == "cuda" else "gloo"
    dist.init_process_group(backend)
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


def make_optimizer(gen: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam with two groups: the shared convolutions at lr, the per-style γ/β tables at
    lr * norm_lr_scale. Adam moves every parameter by about lr per step whatever its gradient
    scale, and a style's row learns only from that style's images (1/N of each batch), so at
    one lr the rows need tens of thousands of steps to drift apart (Magenta trains 40k);
    a larger step for the rows makes eight styles distinct within a CPU-sized run."""
    tables, convs = [], []
    for name, p in gen.named_parameters():
        (tables if is_style_table(name) else convs).append(p)
    return torch.optim.Adam([{"params": convs, "lr_scale": 1.0},
                             {"params": tables, "lr_scale": cfg.norm_lr_scale}], lr=cfg.lr)


def run_settings(cfg: TrainConfig, d: Dist | None = None, progress: bool = True) -> RunSettings:
    """The runner's share of the config: schedule, log/checkpoint cadence, limit, seeding."""
    d = d or Dist()
    if cfg.fit_time_limit and d.world > 1:
        # each rank would time its own pace and plan its own end
        raise UserError("fit_time_limit plans from one process's pace: train on one device")
    # 2 % of the limit is left for the checkpoints and a slower window than the first steps
    budget = cfg.time_limit_min * 60 * 0.98 if cfg.fit_time_limit else 0.0
    return RunSettings(steps=cfg.steps, lr=cfg.lr, schedule=cfg.lr_schedule,
                       decay_from=cfg.lr_decay_from, budget_s=budget,
                       log_every=cfg.log_every, ckpt_every=cfg.ckpt_every,
                       time_limit_min=cfg.time_limit_min, seed=cfg.seed, rank=d.rank,
                       main=d.main, progress=progress)


def _load_resume(path: Path, cfg: TrainConfig, card: ModelCard, gen, opt) -> tuple[int, float]:
    state = read_checkpoint(path)
    old = ModelCard.from_dict(state["card"])
    if old.style_names != card.style_names or old.alpha != card.alpha or old.arch != card.arch:
        raise TrainError(f"{path} was trained with styles {old.style_names}, alpha {old.alpha}, "
                         f"arch {old.arch}; the config asks for {card.style_names}, alpha "
                         f"{card.alpha}, arch {card.arch}. Use a new --out or --no-resume.")
    gen.load_state_dict(state["model"])
    for key in ("fine_tuned_from", "style_edits"):  # the lineage of a fine-tuning run
        if key in old.training:
            card.training[key] = old.training[key]
    if [len(g["params"]) for g in state["optimizer"]["param_groups"]] == [
            len(g["params"]) for g in opt.param_groups]:
        opt.load_state_dict(state["optimizer"])
    else:  # a checkpoint from before the γ/β group: keep its weights, restart Adam's moments
        print(f"stylebox train: {path} has another optimizer layout; its weights are kept, "
              "the optimizer state starts afresh", file=sys.stderr)
    return int(state["step"]), float(old.training.get("train_seconds", 0.0))


def build_loss(cfg: TrainConfig, styles: list[torch.Tensor], device: torch.device, nhwc: bool,
               vgg: VGGFeatures | None = None,
               factors: list[float] | None = None) -> PerceptualLoss:
    """The config's loss on `device`: VGG (NHWC if asked) and the per-style Gram targets,
    computed once from `styles`, one (1, 3, H, W) image per style (with `factors`, one
    weight per style on its style term)."""
    loss_fn = PerceptualLoss.from_config(cfg, vgg).to(device)
    if nhwc:
        loss_fn.vgg.to(memory_format=torch.channels_last)
    loss_fn.set_style_targets([s.to(device) for s in styles], factors)
    return loss_fn


def draw_batch(bank: PhotoBank, rng: torch.Generator, n: int, n_styles: int,
               device: torch.device, nhwc: bool, cache: ContentCache | None = None) -> Batch:
    """Photos (n, 3, S, S), one-hot style weights (n, N) and style indices (n,); with a
    content cache, the photos' content features too."""
    photo, (picks, tops, lefts) = bank.draw(n, rng)  # (n, 3, S, S)
    style_idx = torch.randint(n_styles, (n,), generator=rng)
    weights = torch.nn.functional.one_hot(style_idx, n_styles).float().to(device)
    if nhwc:
        photo = photo.contiguous(memory_format=torch.channels_last)
    ref = cache.crops(picks, tops, lefts, bank.crop, device) if cache else None
    return Batch(photo, weights, style_idx.to(device), ref)


def open_cache(cfg: TrainConfig, bank: PhotoBank, loss_fn: PerceptualLoss, d: Dist,
               progress: bool) -> ContentCache:
    """cfg.content_cache for the bank's photos (built by the main process when missing);
    the bank's crops then line up with the cached features."""
    args = (cfg.content_cache, bank.files, bank.crop, cfg.content_layers,
            str(cfg.resolve(cfg.vgg_weights)))
    if d.main:  # builds it when missing; the others wait for it, then only open it
        cache = ContentCache.open(*args, vgg=loss_fn.vgg, progress=progress)
    if d.world > 1:
        dist.barrier()
        if not d.main:
            cache = ContentCache.open(*args)
    bank.align = max(stride(n) for n in cfg.content_layers)
    return cache


def open_log(path: Path, fields: list[str], fresh: bool):
    """log.csv for appending rows of `fields` (the mode's columns); a resumed run whose log
    has other columns (written by an older version) gets them merged into one header."""
    if fresh or not path.is_file():
        f = open(path, "w", newline="")  # noqa: SIM115
        log = csv.DictWriter(f, fields)
        log.writeheader()
        return f, log
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        old, rows = reader.fieldnames or [], list(reader)
    if old != fields:
        fields = fields + [c for c in old if c not in fields]
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fields, restval="")
            w.writeheader()
            w.writerows(rows)
    f = open(path, "a", newline="")  # noqa: SIM115
    return f, csv.DictWriter(f, fields, restval="")


_LINEAGE_KEYS = ("name", "version", "steps_done", "train_seconds", "machine", "precision",
                 "fine_tuned_from", "pruned_from")


def record_init(card: ModelCard, base: ModelCard) -> None:
    """A fine-tuned card keeps where its weights came from: the base's name, steps and
    machine (and its own base, nested), and how its style rows were made (style_edits)."""
    card.training["fine_tuned_from"] = {k: base.training[k] for k in _LINEAGE_KEYS
                                        if k in base.training} | {"name": base.name}
    if "style_edits" in base.training:
        card.training["style_edits"] = base.training["style_edits"]


def _load_init(cfg: TrainConfig, card: ModelCard, gen: torch.nn.Module
               ) -> tuple[torch.nn.Module, list[str]]:
    """Start from `cfg.init_from`'s weights (a checkpoint or an .onnx; same styles). Another
    variant of the same network (separable, resize, widths) starts from what
    model/surgery.py can carry over; what it cannot keeps its fresh initialisation.
    Returns the source network and the names of the fresh tensors."""
    src, old = load_generator(cfg.init_from)
    if old.style_names != card.style_names:
        raise TrainError(f"init_from {cfg.init_from} holds styles {old.style_names}; the "
                         f"config asks for {card.style_names}")
    fresh = transplant(src, gen)
    if all(n in fresh for n in gen.state_dict() if n.endswith("weight")):  # no conv fits
        raise TrainError(f"init_from {cfg.init_from} (alpha {old.alpha}, arch {old.arch}) "
                         f"shares no layer shape with this network (alpha {card.alpha}, arch "
                         f"{card.arch}); prune it first (stylebox prune)")
    if fresh:
        print(f"stylebox train: {len(fresh)} tensors start fresh (not in {cfg.init_from}): "
              f"{', '.join(fresh[:6])}{' ...' if len(fresh) > 6 else ''}", file=sys.stderr)
    record_init(card, old)
    return src, fresh


def train(cfg: TrainConfig, out_dir: str | Path, *, resume: bool = True,
          vgg: VGGFeatures | None = None, progress: bool = True) -> dict:
    """Train to `cfg.steps` (or the time limit); returns a summary of the last log window."""
    out = Path(out_dir)
    device_kind = "cuda" if cfg.device.startswith("cuda") or (
        cfg.device == "auto" and torch.cuda.is_available()) else "cpu"
    d = _setup_dist(device_kind)
    device = pick_device(cfg.device, d)
    cuda = device.type == "cuda"
    if cuda:  # every step has the same shapes: let cuDNN time its algorithms once
        torch.backends.cudnn.benchmark = True
    if cfg.batch_size % d.world:
        raise TrainError(f"batch_size {cfg.batch_size} must divide by {d.world} processes")
    local_batch = cfg.batch_size // d.world

    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    card = cfg.card()
    card.training["vgg_weights"] = "random (tests)" if vgg is not None else Path(
        cfg.vgg_weights).name
    gen = build_generator(card).to(device)
    opt = make_optimizer(gen, cfg)
    step, prior_seconds = 0, 0.0
    ckpt = out / CKPT_NAME
    init = None
    if resume and ckpt.is_file():
        step, prior_seconds = _load_resume(ckpt, cfg, card, gen, opt)
    elif cfg.init_from:
        init = _load_init(cfg, card, gen)
    amp = use_amp(device, cfg.amp)  # bf16 on CUDA and on CPUs with AMX / AVX512-BF16
    nhwc = cfg.channels_last  # NHWC: faster for oneDNN (CPU, fp32 and bf16) and cuDNN
    if nhwc:
        gen = gen.to(memory_format=torch.channels_last)
    card.training["precision"] = "bf16 autocast" if amp else "fp32"

    styles = load_style_images([cfg.resolve(s.path) for s in cfg.styles], cfg.style_size)
    # the targets are cfg.styles in order, so style_weight_scale's factors line up with them
    loss_fn = build_loss(cfg, styles, device, nhwc, vgg, cfg.style_factors())
    bank = PhotoBank(list_photos(cfg.resolve(cfg.photos), cfg.max_photos), cfg.image_size, device)
    if init and any(n.startswith("out_conv") for n in init[1]):  # a new last conv
        photos = bank.batch(4, torch.Generator().manual_seed(cfg.seed))[..., :96, :96].float()
        gen.eval()
        rms = fit_head(init[0].to(device).float(), gen, photos.contiguous())
        print(f"stylebox train: the new last conv starts from a least-squares fit to "
              f"{cfg.init_from}'s output (RMS {rms:.3f} in logits)", file=sys.stderr)
    teachers = Teachers([os.path.expanduser(p) for p in cfg.teachers], card.style_names,
                        device, nhwc) if cfg.teachers else None
    mode = cfg.mode
    model = mode.model(gen)
    model = DDP(model, device_ids=[device.index] if cuda else None) if d.world > 1 else model
    fwd = torch.compile(model) if cfg.compile else model
    ctx = Step(fwd, loss_fn, opt, autocast(device, amp), cfg, teachers)
    n_styles = card.n_styles

    if d.main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
        logf, log = open_log(out / "log.csv", mode.log_fields(), fresh=step == 0)

    def write_log(row: dict) -> None:
        log.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
        logf.flush()

    def save(at: int) -> None:
        if d.main:
            card.training["steps_done"] = at
            card.training["world_size"] = d.world
            # Wall time over every session that trained this checkpoint, and where it ran.
            card.training["train_seconds"] = round(
                prior_seconds + time.monotonic() - t_start, 3)
            card.training["machine"] = machine_summary(device)
            save_checkpoint(ckpt, gen, card, optimizer=opt.state_dict(), step=at,
                            config=cfg.to_dict())

    cache = open_cache(cfg, bank, loss_fn, d, progress) if cfg.content_cache else None

    def step_fn(_step: int, rng: torch.Generator) -> dict[str, torch.Tensor]:
        batch = draw_batch(bank, rng, local_batch, n_styles, device, nhwc, cache)
        return mode.step(ctx, batch, rng)

    t_start = time.monotonic()
    gen.train()
    try:
        res = run_steps(run_settings(cfg, d, progress), opt, step_fn, start=step,
                        on_log=write_log, save=save,
                        agree=any_rank(device) if d.world > 1 else None)
    finally:
        if d.main:
            logf.close()
        if d.world > 1:
            dist.destroy_process_group()
    return {**res.row, "step": res.step, "stopped": res.stopped, "checkpoint": str(ckpt)}
