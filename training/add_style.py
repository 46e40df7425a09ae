"""`stylebox add-style`: teach a trained model one more style by training only its γ/β row.

    stylebox add-style --model runs/a0.25/last.pt --name kandinsky --image k.jpg \\
        --title "Composition VII (Kandinsky)" --out runs/a0.25-plus/last.pt
    stylebox export runs/a0.25-plus/last.pt -o models/stylebox-plus.onnx

Dumoulin et al. (2017) show that the convolutions of an N-style network generalise: a new
style needs only its own instance-norm scale and shift. So every convolution and every
existing γ/β row is frozen (they are not even parameters of the optimiser, and the output
checkpoint holds them bit-identical), a new row is appended, initialised from the existing
style whose Gram targets are nearest to the new painting's (or from the mean row), and only
that row is trained with the same perceptual loss, photo bank and VGG as `stylebox train`.
Data paths and loss settings come from the checkpoint's own training config unless
`--config` is given; its data root (the folder of the machine that trained it) gives way to
`--data-root` or `$STYLEBOX_DATA`.
"""

from __future__ import annotations

import csv
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.func import functional_call

from stylebox.errors import UserError, doc_parser
from stylebox.model.card import CardError, StyleInfo
from stylebox.model.checkpoint import load_checkpoint, load_state, read_checkpoint, save_checkpoint
from stylebox.model.edit import (
    append_style,
    edited_config,
    is_style_table,
    log_edit,
    style_origins,
)
from stylebox.training.accel import autocast, use_amp
from stylebox.training.config import ConfigError, TrainConfig
from stylebox.training.data import (
    DataError,
    PhotoBank,
    find_style_image,
    list_photos,
    load_rgb,
    load_style_images,
)
from stylebox.training.loop import build_loss
from stylebox.training.losses import PerceptualLoss
from stylebox.training.modes import Batch, Step, perceptual_step
from stylebox.training.runner import Dist, RunSettings, pick_device, run_steps
from stylebox.training.vgg import VGGFeatures


class AddStyleError(UserError):
    """A bad add-style argument or a partial run that belongs to another one."""


@dataclass
class Hooks:
    """What a caller running add-style as a job watches and steers (training/worker.py)."""

    # After each step: steps done, steps planned, that step's losses; it may raise to stop.
    on_step: Callable[[int, int, dict[str, float]], None] | None = None
    on_preview: Callable[[np.ndarray], None] | None = None  # (H, W, 3) uint8, styled
    preview_photo: np.ndarray | None = None  # (H, W, 3) uint8: what on_preview shows styled
    preview_every_s: float = 10.0


def checkpoint_config(state: dict, path: str | Path) -> TrainConfig:
    try:
        return TrainConfig.from_checkpoint(state, path)
    except ConfigError as e:
        raise AddStyleError(str(e)) from None


def nearest_style(loss_fn: PerceptualLoss, new: int, candidates: list[int]) -> tuple[int, list]:
    """The candidate whose Gram targets are closest to style `new` (relative, summed over
    layers, the same measure the style loss uses); also every candidate's distance."""
    dists = []
    for i in candidates:
        d = sum(((loss_fn.targets[n][i] - loss_fn.targets[n][new]).pow(2).mean()
                 / loss_fn.scales[n][new]).item() for n in loss_fn.style_layers)
        dists.append(d)
    return candidates[int(np.argmin(dists))], dists


def _preview(path: Path, photo: torch.Tensor, styled: torch.Tensor) -> None:
    """Photo and result side by side: (3, H, W) floats in [0, 1] each."""
    pair = torch.cat([photo, styled], dim=-1).clamp(0, 1).mul(255).round().byte()  # (3, H, 2W)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pair.permute(1, 2, 0).cpu().numpy()).save(path, quality=90)


def add_style(base: str | Path, image: str | Path, name: str, out: str | Path, *,
              cfg: TrainConfig | None = None, title: str = "", source: str = "",
              steps: int = 230, lr: float = 5e-2, init: str = "nearest",
              lr_schedule: str = "cosine",
              preview_every: int = 200, preview_dir: str | Path | None = None,
              vgg: VGGFeatures | None = None, progress: bool = True,
              time_limit_min: float = 0.0, resume: bool = True, ckpt_every: int = 25,
              data_origin: str = "", budget_s: float = 0.0,
              hooks: Hooks | None = None) -> dict:
    """Append style `name` (painting `image`) to checkpoint `base`, write `out`; a summary.

    Like `stylebox train`, a run resumes: every `ckpt_every` steps, at the time limit and on
    SIGTERM the row, Adam's state, the step and the curve go to OUT_STEM.partial.pt, and
    the same command continues from there (deleted once `steps` are done). `out` is written
    either way, so a stopped run still leaves a usable model. `data_origin` says where
    `cfg`'s data root came from, for the error if it does not exist. `budget_s` fits the
    steps (at most `steps`) to that many seconds of training on this machine; `hooks` report
    each step and a preview as the job runs.
    """
    t0 = time.monotonic()
    generator, card, state = load_checkpoint(base)
    if cfg is None:
        cfg = checkpoint_config(state, base)
        data_origin = ("from STYLEBOX_DATA" if os.environ.get("STYLEBOX_DATA")
                       else "recorded in the checkpoint's training config")
    cfg.check_data_root(origin=data_origin)
    style = StyleInfo(name, title, source or f"{Path(image).name} (added by stylebox add-style)")
    if name in card.style_names:
        raise CardError(f"the model already has a style named {name!r}")
    device = pick_device(cfg.device, Dist())

    # The new painting's Gram targets, and the existing styles' where their images are known.
    # (the config's [[styles]], or the file an earlier add-style recorded; as `stylebox eval`)
    origins = style_origins(card)
    known = {s.name: find_style_image(s.name, cfg, origins[s.name])[0] for s in card.styles}
    existing = [i for i, s in enumerate(card.styles) if known[s.name] is not None]
    if init not in ("nearest", "mean") and init not in card.style_names:
        raise AddStyleError(f"--init must be 'nearest', 'mean' or one of the model's styles "
                            f"({', '.join(card.style_names)}), not {init!r}")
    use = existing if init == "nearest" else []
    paths = [known[card.styles[i].name] for i in use] + [Path(image)]
    loss_fn = build_loss(cfg, load_style_images(paths, cfg.style_size), device, False, vgg)
    target = len(use)  # the new painting's row in the loss's target tables
    init_from, distances = None, {}
    if init == "nearest" and use:
        k, dists = nearest_style(loss_fn, target, list(range(len(use))))
        init_from = use[k]
        distances = {card.styles[i].name: round(d, 6) for i, d in zip(use, dists, strict=True)}
    elif init not in ("nearest", "mean"):
        init_from = card.index(init)
    generator, card = append_style(generator, card, style, init_from)
    n = card.n_styles - 1  # the new row

    # Only the new row is optimised; functional_call splices it into otherwise frozen tables.
    generator = generator.to(device).eval().requires_grad_(False)
    frozen = {k: v.detach() for k, v in generator.named_parameters()}
    rows = {k: v[n].clone().requires_grad_(True) for k, v in frozen.items() if is_style_table(k)}
    opt = torch.optim.Adam(rows.values(), lr=lr)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.stem + ".partial.pt")
    start, prior_s, curve = 0, 0.0, []
    if resume and partial.is_file():
        st = load_state(partial)
        if not isinstance(st, dict) or not {"name", "base", "n", "rows"} <= st.keys():
            raise AddStyleError(f"{partial} is not an add-style partial run; delete it")
        if (st["name"], st["base"], st["n"]) != (name, str(base), n):
            raise AddStyleError(f"{partial} belongs to another run ({st['name']} on "
                                f"{st['base']}); delete it or choose another --out")
        with torch.no_grad():
            for k, row in rows.items():
                row.copy_(st["rows"][k])
        opt.load_state_dict(st["optimizer"])
        start, prior_s, curve = st["step"], st["seconds"], st["curve"]

    def forward(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        params = dict(frozen)
        for k, row in rows.items():
            params[k] = torch.cat([frozen[k][:n], row[None]])  # (N+1, C)
        return functional_call(generator, params, (x, w))

    files = list_photos(cfg.resolve(cfg.photos), cfg.max_photos)
    bank = PhotoBank(files, cfg.image_size, device)
    preview_photo = load_rgb(files[0], long_side=2 * cfg.image_size)[None].float().div(255)
    preview_photo = preview_photo.to(device)  # (1, 3, H, W)
    preview_dir = Path(preview_dir) if preview_dir else out.parent / f"{out.stem}-previews"
    one_hot = torch.zeros(1, n + 1, device=device)
    one_hot[0, n] = 1.0
    weights = one_hot.expand(cfg.batch_size, -1)  # (B, N+1)
    style_idx = torch.full((cfg.batch_size,), target, device=device)
    precision = autocast(device, use_amp(device, cfg.amp))  # bf16 where the hardware has it
    ctx = Step(forward, loss_fn, opt, precision, cfg)  # the perceptual mode, on one new row
    previews: list[str] = []

    def preview(step: int) -> None:
        with torch.no_grad():
            styled = forward(preview_photo, one_hot)
        path = preview_dir / f"{name}-{step:06d}.jpg"
        _preview(path, preview_photo[0], styled[0].float())
        previews.append(str(path))

    t_loop = time.monotonic()

    def elapsed() -> float:  # training seconds over every session of this run
        return prior_s + time.monotonic() - t_loop

    def save_partial(step: int) -> None:
        if step < steps:  # once done, the partial file goes (below)
            torch.save({"name": name, "base": str(base), "n": n, "step": step,
                        "seconds": elapsed(), "curve": curve, "optimizer": opt.state_dict(),
                        "rows": {k: v.detach().cpu() for k, v in rows.items()}}, partial)

    def log(row: dict) -> None:
        curve.append({"step": row["step"], "seconds": round(elapsed(), 2),
                      **{k: row[k] for k in ("loss", "content", "style")}})

    hooks = hooks or Hooks()
    shown = {"at": -1e9, "parts": {}}
    job_photo = None
    if hooks.preview_photo is not None:  # (1, 3, H, W) in [0, 1]
        job_photo = torch.from_numpy(np.array(hooks.preview_photo)).permute(2, 0, 1)[None].float()
        job_photo = job_photo.div(255).to(device)

    def job_preview() -> None:
        if hooks.on_preview is None or job_photo is None:
            return
        with torch.no_grad():
            styled = forward(job_photo, one_hot)[0].float().clamp(0, 1)  # (3, H, W)
        hooks.on_preview(styled.mul(255).round().byte().permute(1, 2, 0).cpu().numpy())

    def step_fn(step: int, rng: torch.Generator) -> dict[str, torch.Tensor]:
        photo = bank.batch(cfg.batch_size, rng)  # (B, 3, S, S)
        parts = perceptual_step(ctx, Batch(photo, weights, style_idx), rng)
        if preview_every and ((step + 1) % preview_every == 0 or step + 1 == steps):
            preview(step + 1)
        if hooks.on_step is not None:
            shown["parts"] = {k: float(v) for k, v in parts.items()}
        if time.monotonic() - shown["at"] >= hooks.preview_every_s:
            shown["at"] = time.monotonic()
            job_preview()
        return parts

    def on_step(done: int, planned: int) -> None:
        if hooks.on_step is not None:
            hooks.on_step(done, planned, shown["parts"])

    if preview_every and start == 0:
        preview(0)  # the initialisation, before any training
    # Rank 0, and step k seeded as k + 1: the numbering add-style runs have always had.
    settings = RunSettings(steps=steps, lr=lr, schedule=lr_schedule, log_every=cfg.log_every,
                           ckpt_every=ckpt_every, time_limit_min=time_limit_min, seed=cfg.seed,
                           seed_offset=1, progress=progress, desc=f"add-style {name}",
                           budget_s=budget_s)
    res = run_steps(settings, opt, step_fn, start=start, on_log=log, save=save_partial,
                    on_step=on_step)
    step, stopped = res.step, res.stopped
    if step >= res.steps:
        partial.unlink(missing_ok=True)
    job_preview()  # the row as it is kept
    with open(out.with_name(out.stem + "-curve.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, ["step", "seconds", "loss", "content", "style"])
        w.writeheader()
        w.writerows(curve)

    with torch.no_grad():
        for k, p in generator.named_parameters():
            if k in rows:
                p[n] = rows[k].detach()
    seconds = time.monotonic() - t0
    record = {"name": name, "image": Path(image).name, "steps": step, "lr": lr,
              "lr_schedule": lr_schedule,
              "batch_size": cfg.batch_size, "image_size": cfg.image_size,
              "style_size": cfg.style_size, "init_from": card.style_names[init_from]
              if init_from is not None else "mean", "device": device.type,
              "seconds": round(seconds, 1), "train_seconds": round(elapsed(), 1),
              "final": curve[-1] if curve else {}}
    log_edit(card, op="add", **record)
    # Inside the data root the painting is recorded relative to it, as the config's styles
    # are, so the checkpoint works on another machine with the same data folder.
    painting, root = Path(image).resolve(), Path(cfg.data_root).expanduser().resolve()
    recorded = painting.relative_to(root) if painting.is_relative_to(root) else painting
    config = edited_config(cfg.to_dict(), "append", name, path=str(recorded),
                           title=style.title, source=style.source)
    save_checkpoint(out, generator.cpu(), card, config=config)
    return {**record, "checkpoint": str(out), "n_styles": card.n_styles, "curve": curve,
            "stopped": stopped,
            "gram_distances": distances, "previews": previews}


def main(argv: list[str] | None = None) -> int:
    p = doc_parser("stylebox add-style", __doc__)
    p.add_argument("--model", required=True, help="base checkpoint (from `stylebox train`)")
    p.add_argument("--name", required=True, help="new style's URL-safe name (?style=NAME)")
    p.add_argument("--image", required=True, help="the painting")
    p.add_argument("--title", default="", help="human title (default: from the name)")
    p.add_argument("--source", default="", help="where the painting comes from")
    p.add_argument("--out", required=True, help="checkpoint to write (N+1 styles)")
    p.add_argument("--config", help="TOML config (default: the checkpoint's own)")
    # Chosen from the measured curve (docs/add-style.md): on the 2-core CPU, 230 steps at
    # batch 4 on the base's 192² crops take 9.7 minutes and re-add a removed style within
    # 5 % of its jointly trained style loss.
    p.add_argument("--steps", type=int, default=230)
    p.add_argument("--lr", type=float, default=5e-2, help="Adam learning rate for the new row")
    p.add_argument("--lr-schedule", choices=("cosine", "constant"), default="cosine",
                   help="cosine: from --lr to --lr/10 over --steps (default)")
    p.add_argument("--init", default="nearest",
                   help="'nearest' (by Gram distance, default), 'mean', or a style name")
    p.add_argument("--preview-every", type=int, default=200, help="0 = no previews")
    p.add_argument("--preview-dir", help="default: OUT's folder / OUT_STEM-previews")
    # Batch 4, not the base's 8: ~1k numbers train, and half the batch is twice the steps.
    # The crop stays the base's (192²): a row fitted on 128² crops matches its painting at
    # the wrong scale (style 0.73 instead of 0.53 at 384², docs/add-style.md).
    p.add_argument("--batch-size", type=int, default=4)
    for flag, typ in (("image-size", int), ("style-size", int),
                      ("device", str), ("data-root", str), ("photos", str),
                      ("vgg-weights", str), ("seed", int)):
        p.add_argument("--" + flag, type=typ, dest=flag.replace("-", "_"))
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any training-config key (value parsed as TOML)")
    p.add_argument("--time-limit-min", type=float, default=0.0,
                   help="stop after this many minutes (the same command resumes)")
    p.add_argument("--no-resume", action="store_true", help="ignore OUT_STEM.partial.pt")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if args.steps < 1:
        p.error("--steps must be >= 1")
    keys = ("batch_size", "image_size", "style_size", "device", "data_root", "photos",
            "vgg_weights", "seed")
    values = {k: getattr(args, k) for k in keys if getattr(args, k) is not None}
    if not Path(args.image).is_file():
        raise DataError(f"style image {args.image} not found")
    cfg = None
    if args.config:
        cfg = TrainConfig.load(args.config, args.set)
    elif args.set or values:
        cfg = checkpoint_config(read_checkpoint(args.model), args.model).override(args.set)
    cfg = cfg.replace(**values) if cfg is not None else None
    origin = ("from --data-root" if args.data_root else
              f"the data_root of {args.config}" if args.config else
              "from STYLEBOX_DATA" if os.environ.get("STYLEBOX_DATA") else
              "recorded in the checkpoint's training config")
    s = add_style(args.model, args.image, args.name, args.out, cfg=cfg, title=args.title,
                  source=args.source, steps=args.steps, lr=args.lr, init=args.init,
                  lr_schedule=args.lr_schedule,
                  preview_every=args.preview_every, preview_dir=args.preview_dir,
                  progress=not args.no_progress, time_limit_min=args.time_limit_min,
                  resume=not args.no_resume, data_origin=origin)
    final = s["final"]
    print(f"stylebox add-style: wrote {s['checkpoint']} ({s['n_styles']} styles; "
          f"{s['name']} initialised from {s['init_from']}, {s['steps']} steps "
          f"({s['stopped']}) in {s['train_seconds']:.1f} s of training on {s['device']}; "
          f"final loss {final.get('loss', 0):.4g}, "
          f"style {final.get('style', 0):.4g}, content {final.get('content', 0):.4g}). "
          f"Next: stylebox export {s['checkpoint']} -o MODEL.onnx")
    return 0
