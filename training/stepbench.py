"""`stylebox train-bench`: seconds per training step of the real loss, per setting.

    stylebox train-bench --config configs/default.toml --shapes 128x16,192x8,256x4
    stylebox train-bench --shapes 128x16 --amp off --amp on --channels-last on \\
        --channels-last off --full-reference --report docs/training.md
    stylebox train-bench --shapes 192x4 --set temporal_weight=100 \\
        --with 'coarse_style_layers=["relu3_1","relu4_1","relu5_1"]' \\
        --with 'content_cache="runs/content-cache-192"'

Each row builds the config's generator, VGG-19 loss and style targets, decodes --photos
photos, runs --warmup steps and then times --steps steps with the training loop's own
step function of its mode (training/modes.py; same batches, same optimiser). Rows: every
shape (CROPxBATCH) x amp x layout, plus, with --full-reference, the old loss whose content
reference ran VGG to relu5_1, plus one row per --with (config overrides on top of --set,
joined by ";" for several in one row: the cheaper-step settings).
bf16 on a CPU without AMX/AVX512-BF16 is emulated by oneDNN and very slow: expect minutes.
With --report FILE the markdown table replaces the part of FILE between the
`train-bench:begin` / `train-bench:end` markers, or those of --section NAME (or is appended).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from stylebox.errors import doc_parser
from stylebox.model.checkpoint import build_generator
from stylebox.report import write_between
from stylebox.training.accel import autocast, cpu_has_bf16, machine_summary, use_amp
from stylebox.training.config import ConfigError, TrainConfig
from stylebox.training.data import PhotoBank, list_photos, load_style_images
from stylebox.training.loop import build_loss, draw_batch, make_optimizer, open_cache
from stylebox.training.modes import Step
from stylebox.training.runner import Dist, pick_device


def parse_shapes(text: str) -> list[tuple[int, int]]:
    out = []
    for item in text.split(","):
        crop, sep, batch = item.strip().partition("x")
        if not sep or not crop.isdigit() or not batch.isdigit() or int(crop) < 16:
            raise ConfigError(f"--shapes wants CROPxBATCH items such as 128x16, got {item!r}")
        out.append((int(crop), int(batch)))
    return out


def time_steps(cfg: TrainConfig, bank: PhotoBank, styles: list[torch.Tensor], *,
               amp: bool, nhwc: bool, full_reference: bool, warmup: int, steps: int) -> dict:
    """Mean seconds per step over `steps` timed steps, after `warmup` untimed ones."""
    device = pick_device(cfg.device, Dist())
    torch.manual_seed(cfg.seed)
    gen = build_generator(cfg.card()).to(device)
    opt = make_optimizer(gen, cfg)
    if nhwc:
        gen = gen.to(memory_format=torch.channels_last)
    loss_fn = build_loss(cfg, styles, device, nhwc)
    if full_reference:
        loss_fn.ref_layers = None
    bank.align = 1
    cache = open_cache(cfg, bank, loss_fn, Dist(), True) if cfg.content_cache else None
    rng = torch.Generator().manual_seed(cfg.seed)
    mode = cfg.mode
    ctx = Step(mode.model(gen), loss_fn, opt, autocast(device, amp), cfg)
    times = []
    for i in range(warmup + steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()  # the batch counts: cutting cached features is the step's
        batch = draw_batch(bank, rng, cfg.batch_size, len(styles), device, nhwc, cache)
        parts = mode.step(ctx, batch, rng)
        parts["loss"].item()  # wait for the step (a device sync on CUDA)
        if i >= warmup:
            times.append(time.perf_counter() - t)
    mean = sum(times) / len(times)
    return {"s_per_step": mean, "steps_per_s": 1 / mean,
            "images_per_s": cfg.batch_size / mean, "loss": parts["loss"].item()}


def table(rows: list[dict], meta: str) -> str:
    lines = [meta, "", "| crop | batch | precision | layout | content reference | settings | "
             "s/step | steps/s | images/s | speed-up |",
             "| ---: | ---: | --- | --- | --- | --- | ---: | ---: | ---: | ---: |"]
    base: dict[tuple, float] = {}
    for r in rows:  # speed-up: against the first row of the same shape
        first = base.setdefault((r["crop"], r["batch"]), r["images_per_s"])
        lines.append(f"| {r['crop']}² | {r['batch']} | {r['precision']} | {r['layout']} | "
                     f"{r['reference']} | {r.get('settings') or 'as configured'} | "
                     f"{r['s_per_step']:.2f} | {r['steps_per_s']:.3f} | "
                     f"{r['images_per_s']:.2f} | {r['images_per_s'] / first:.2f}x |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = doc_parser("stylebox train-bench", __doc__)
    p.add_argument("--config", default="configs/default.toml")
    p.add_argument("--data-root", help="override the config's data_root")
    p.add_argument("--shapes", default="128x16,192x8,256x4", help="CROPxBATCH, comma-separated")
    p.add_argument("--amp", action="append", choices=("auto", "on", "off"),
                   help="bf16 autocast setting(s) to time (repeatable; default auto)")
    p.add_argument("--channels-last", action="append", choices=("on", "off"),
                   help="memory layout(s) to time (repeatable; default on)")
    p.add_argument("--full-reference", action="store_true",
                   help="also time the old loss: content reference through all of VGG")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for every row (e.g. temporal_weight=100)")
    p.add_argument("--with", action="append", default=[], dest="variants",
                   metavar="KEY=VALUE[;KEY=VALUE]", help="one more row per use, with these "
                   "overrides (e.g. the cheaper-step settings)")
    p.add_argument("--photos", type=int, default=64, help="photos to decode (speed only)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--steps", type=int, default=5, help="timed steps per row")
    p.add_argument("--report", help="markdown file to write the table into")
    p.add_argument("--section", default="train-bench",
                   help="marker name of the table's block in --report")
    args = p.parse_args(argv)
    cfg = TrainConfig.load(args.config, args.set)
    if args.data_root:
        cfg = cfg.replace(data_root=args.data_root)
    shapes = parse_shapes(args.shapes)
    device = pick_device(cfg.device, Dist())
    files = list_photos(cfg.resolve(cfg.photos), args.photos)
    styles = load_style_images([cfg.resolve(s.path) for s in cfg.styles], cfg.style_size)
    rows = []
    for crop, batch in shapes:
        bank = PhotoBank(files, crop, device)
        run = cfg.replace(image_size=crop, batch_size=batch)
        variants = [(a, c, False, "") for a in (args.amp or ["auto"])
                    for c in (args.channels_last or ["on"])]
        if args.full_reference:
            variants.append((variants[0][0], variants[0][1], True, ""))
        variants += [(variants[0][0], variants[0][1], False, w) for w in args.variants]
        for amp_setting, layout, full, extra in variants:
            amp = use_amp(device, amp_setting)
            row_cfg = run.override([x for x in extra.split(";") if x.strip()])
            r = time_steps(row_cfg, bank, styles, amp=amp, nhwc=layout == "on",
                           full_reference=full, warmup=args.warmup, steps=args.steps)
            r.update(crop=crop, batch=batch, precision="bf16 autocast" if amp else "fp32",
                     layout="NHWC" if layout == "on" else "NCHW", settings=extra,
                     reference="to relu5_1 (before)" if full else
                     "cached" if row_cfg.content_cache else "to the content layer")
            rows.append(r)
            print(f"{crop}x{batch} {r['precision']:<13} {r['layout']} {r['reference']:<20} "
                  f"{r['s_per_step']:.3f} s/step  {r['steps_per_s']:.3f} steps/s {extra}",
                  flush=True)
    meta = (f"`stylebox train-bench` on {machine_summary(device)}; native bf16: "
            f"{'yes' if cpu_has_bf16() else 'no'}; α = {cfg.alpha}, {len(cfg.styles)} styles, "
            f"mode {cfg.mode.name}, {args.steps} timed steps after {args.warmup} warm-up "
            f"per row.")
    text = table(rows, meta)
    print(text)
    if args.report:
        write_between(Path(args.report), args.section, text)
    return 0
