"""The training loop: all styles share one generator, every batch mixes styles.

Resumable: `OUT/last.pt` holds model, optimizer, step and card, and the data stream is
reseeded from (seed, rank, step) every step, so stopping and resuming gives the same
weights as one uninterrupted run. Runs on CPU (tests), one GPU, or several with `torchrun`
(DistributedDataParallel; NCCL on CUDA, gloo on CPU).
"""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from stylebox.model.card import ModelCard
from stylebox.model.checkpoint import build_generator, save_checkpoint
from stylebox.model.edit import is_style_table
from stylebox.training.accel import autocast, machine_summary, use_amp
from stylebox.training.config import TrainConfig
from stylebox.training.data import PhotoBank, list_photos, load_style_images
from stylebox.training.losses import LossParts, PerceptualLoss
from stylebox.training.vgg import VGGFeatures
from torch.nn.parallel import DistributedDataParallel as DDP

from stylebox.errors import UserError

CKPT_NAME = "last.pt"
LOG_FIELDS = ["step", "loss", "content", "style", "tv", "lr", "steps_per_s", "elapsed_s"]


class TrainError(UserError):
    pass


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def _setup_dist(device_kind: str) -> Dist:
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Dist()
    backend = "nccl" if device_kind == "cuda" else "gloo"
    dist.init_process_group(backend)
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


def _device(name: str, d: Dist) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and d.world > 1:
        name = f"cuda:{d.local_rank}"
    dev = torch.device(name)
    if dev.type == "cuda" and dev.index is not None:  # set_device refuses a bare "cuda"
        torch.cuda.set_device(dev)
    return dev


def _step_seed(seed: int, rank: int, step: int) -> int:
    return (seed << 40) ^ (rank << 32) ^ step


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


def cosine_lr(lr: float, step: int, steps: int) -> float:
    """`lr` at 0-based `step` of `steps`: cosine from lr down to lr / 10 (training, add-style)."""
    return lr * (0.1 + 0.45 * (1 + math.cos(math.pi * min(step / steps, 1.0))))


def _lr(cfg: TrainConfig, step: int) -> float:
    return cosine_lr(cfg.lr, step, cfg.steps) if cfg.lr_schedule == "cosine" else cfg.lr


class StopSignal:
    """SIGTERM/SIGINT set a flag instead of killing the step: the loop saves and stops.

    `nohup ... &` runs start with SIGINT ignored (a shell gives background jobs SIG_IGN),
    so `kill PID` (SIGTERM) is the way to stop one: it ends at the next step with a checkpoint.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, object] = {}

    def __enter__(self) -> StopSignal:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                if signal.getsignal(sig) is not signal.SIG_IGN:
                    self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, _frame) -> None:
        self.signum = signum
        self.__exit__()  # a second Ctrl-C interrupts at once, as usual

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old = {}


def _should_stop(cfg: TrainConfig, t_start: float, d: Dist, device: torch.device,
                 stop: StopSignal) -> bool:
    """Past the time limit, or signalled? Under DDP every rank must agree, or one would
    wait forever."""
    over = stop.signum is not None or (
        bool(cfg.time_limit_min) and time.monotonic() - t_start > cfg.time_limit_min * 60)
    if d.world > 1:
        flag = torch.tensor([float(over)], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        over = bool(flag.item())
    return over


def _load_resume(path: Path, cfg: TrainConfig, card: ModelCard, gen, opt) -> tuple[int, float]:
    state = torch.load(path, map_location="cpu", weights_only=False)
    old = ModelCard.from_dict(state["card"])
    if old.style_names != card.style_names or old.alpha != card.alpha or old.arch != card.arch:
        raise TrainError(f"{path} was trained with styles {old.style_names}, alpha {old.alpha}, "
                         f"arch {old.arch}; the config asks for {card.style_names}, alpha "
                         f"{card.alpha}, arch {card.arch}. Use a new --out or --no-resume.")
    gen.load_state_dict(state["model"])
    if [len(g["params"]) for g in state["optimizer"]["param_groups"]] == [
            len(g["params"]) for g in opt.param_groups]:
        opt.load_state_dict(state["optimizer"])
    else:  # a checkpoint from before the γ/β group: keep its weights, restart Adam's moments
        print(f"stylebox train: {path} has another optimizer layout; its weights are kept, "
              "the optimizer state starts afresh", file=sys.stderr)
    return int(state["step"]), float(old.training.get("train_seconds", 0.0))


def build_loss(cfg: TrainConfig, styles: list[torch.Tensor], device: torch.device, nhwc: bool,
               vgg: VGGFeatures | None = None) -> PerceptualLoss:
    """The config's loss on `device`: VGG (NHWC if asked) and the per-style Gram targets,
    computed once from `styles`, one (1, 3, H, W) image per style."""
    loss_fn = PerceptualLoss.from_config(cfg, vgg).to(device)
    if nhwc:
        loss_fn.vgg.to(memory_format=torch.channels_last)
    loss_fn.set_style_targets([s.to(device) for s in styles])
    return loss_fn


def draw_batch(bank: PhotoBank, rng: torch.Generator, n: int, n_styles: int,
               device: torch.device, nhwc: bool):
    """Photos (n, 3, S, S), one-hot style weights (n, N) and style indices (n,)."""
    photo = bank.batch(n, rng)  # (n, 3, S, S)
    style_idx = torch.randint(n_styles, (n,), generator=rng)
    weights = torch.nn.functional.one_hot(style_idx, n_styles).float().to(device)
    if nhwc:
        photo = photo.contiguous(memory_format=torch.channels_last)
    return photo, weights, style_idx.to(device)


def train_step(fwd, loss_fn: PerceptualLoss, opt: torch.optim.Optimizer, photo: torch.Tensor,
               weights: torch.Tensor, style_idx: torch.Tensor, precision) -> LossParts:
    """One optimiser step; the forward pass under `precision` (autocast or not)."""
    with precision:
        styled = fwd(photo, weights)  # (B, 3, S, S)
        parts = loss_fn(styled, photo, style_idx)
    opt.zero_grad(set_to_none=True)
    parts.total.backward()
    opt.step()
    return parts


def train(cfg: TrainConfig, out_dir: str | Path, *, resume: bool = True,
          vgg: VGGFeatures | None = None, progress: bool = True) -> dict:
    """Train to `cfg.steps` (or the time limit); returns a summary of the last log window."""
    out = Path(out_dir)
    device_kind = "cuda" if cfg.device.startswith("cuda") or (
        cfg.device == "auto" and torch.cuda.is_available()) else "cpu"
    d = _setup_dist(device_kind)
    device = _device(cfg.device, d)
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
    if resume and ckpt.is_file():
        step, prior_seconds = _load_resume(ckpt, cfg, card, gen, opt)
    amp = use_amp(device, cfg.amp)  # bf16 on CUDA and on CPUs with AMX / AVX512-BF16
    nhwc = cfg.channels_last  # NHWC: faster for oneDNN (CPU, fp32 and bf16) and cuDNN
    if nhwc:
        gen = gen.to(memory_format=torch.channels_last)
    card.training["precision"] = "bf16 autocast" if amp else "fp32"

    styles = load_style_images([cfg.resolve(s.path) for s in cfg.styles], cfg.style_size)
    loss_fn = build_loss(cfg, styles, device, nhwc, vgg)
    bank = PhotoBank(list_photos(cfg.resolve(cfg.photos), cfg.max_photos), cfg.image_size, device)

    model = DDP(gen, device_ids=[device.index] if cuda else None) if d.world > 1 else gen
    fwd = torch.compile(model) if cfg.compile else model
    precision = autocast(device, amp)
    rng = torch.Generator()
    n_styles = card.n_styles

    if d.main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
        new_log = not (out / "log.csv").is_file() or step == 0
        logf = open(out / "log.csv", "w" if new_log else "a", newline="")  # noqa: SIM115
        log = csv.DictWriter(logf, LOG_FIELDS)
        if new_log:
            log.writeheader()
    bar = None
    if progress and d.main:
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, initial=step, unit="step", dynamic_ncols=True)

    def save(at: int) -> None:
        if d.main:
            card.training["steps_done"] = at
            card.training["world_size"] = d.world
            # Wall time over every session that trained this checkpoint, and where it ran.
            card.training["train_seconds"] = round(
                prior_seconds + time.monotonic() - t_start, 1)
            card.training["machine"] = machine_summary(device)
            save_checkpoint(ckpt, gen, card, optimizer=opt.state_dict(), step=at,
                            config=cfg.to_dict())

    t_start = t_win = time.monotonic()
    win_steps, sums = 0, torch.zeros(4, device=device)
    summary: dict = {"step": step, "stopped": "done"}
    gen.train()
    stop = StopSignal()
    try:
        stop.__enter__()  # left in `finally`, so the handlers are back whatever happens
        while step < cfg.steps:
            rng.manual_seed(_step_seed(cfg.seed, d.rank, step))
            batch = draw_batch(bank, rng, local_batch, n_styles, device, nhwc)
            for g in opt.param_groups:
                g["lr"] = _lr(cfg, step) * g["lr_scale"]
            parts = train_step(fwd, loss_fn, opt, *batch, precision)
            step += 1
            win_steps += 1
            sums += torch.stack([parts.total, parts.content, parts.style, parts.tv]).detach()

            last = step == cfg.steps
            # One process checks every step; DDP ranks agree at log steps (one all_reduce).
            over_time = (d.world == 1 or step % cfg.log_every == 0) and _should_stop(
                cfg, t_start, d, device, stop)
            if d.main and (step % cfg.log_every == 0 or last or over_time):
                now = time.monotonic()
                avg = (sums / win_steps).tolist()  # the one host sync per log window
                row = {"step": step, "loss": avg[0], "content": avg[1], "style": avg[2],
                       "tv": avg[3], "lr": _lr(cfg, step - 1),
                       "steps_per_s": win_steps / max(now - t_win, 1e-9),
                       "elapsed_s": now - t_start}
                log.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v)
                              for k, v in row.items()})
                logf.flush()
                summary.update(row)
                if bar:
                    bar.set_postfix(loss=f"{avg[0]:.4g}", content=f"{avg[1]:.3g}",
                                    style=f"{avg[2]:.3g}", it_s=f"{row['steps_per_s']:.1f}")
                t_win, win_steps, sums = now, 0, torch.zeros(4, device=device)
            if bar:
                bar.update(1)
            if step % cfg.ckpt_every == 0 or last or over_time:
                save(step)
            if over_time:
                summary["stopped"] = "signal" if stop.signum is not None else "time_limit"
                break
    except KeyboardInterrupt:
        save(step)  # keep what was learned; rerun the same command to resume
        raise
    finally:
        stop.__exit__()
        if bar:
            bar.close()
        if d.main:
            logf.close()
        if d.world > 1:
            dist.destroy_process_group()
    summary["step"] = step
    summary["checkpoint"] = str(ckpt)
    return summary
