"""`stylebox train`: train a multi-style generator from a TOML config.

    stylebox train --config configs/default.toml --out runs/a0.25
    stylebox train --config configs/default.toml --out runs/a1 --alpha 1 --steps 40000
    torchrun --nproc_per_node 4 -m stylebox train --config configs/default.toml --out runs/x

    stylebox train --init-from models/checkpoints/stylebox-a0.25-10styles.pt --out runs/stable \
        --steps 2000 --lr 2e-4 --set temporal_weight=50 --set blur=3

    stylebox train --init-from models/checkpoints/stylebox-a0.25-10styles.pt --out runs/r2 \
        --set resize=ends --teacher models/stylebox-a1.onnx --teacher models/stylebox-a0.25.onnx

Rerunning the same command resumes from OUT/last.pt (until `steps` is reached). --init-from
starts from another run's weights (fine-tuning); without --config its own config is used.
A variant of the network (--set separable=true, resize=ends) starts from what fits of them
(model/surgery.py); --teacher adds distillation (training/distill.py).
"""

from __future__ import annotations

import argparse

from stylebox.errors import UserError, doc_parser
from stylebox.model.checkpoint import read_checkpoint
from stylebox.training.config import TrainConfig
from stylebox.training.loop import train

# CLI flag -> config key (each also settable with --set key=value).
_FLAGS = {
    "steps": int, "batch_size": int, "alpha": float, "lr": float, "image_size": int,
    "style_size": int, "seed": int, "device": str, "data_root": str, "photos": str,
    "vgg_weights": str, "time_limit_min": float, "ckpt_every": int, "log_every": int,
}


def main(argv: list[str] | None = None) -> int:
    p = doc_parser("stylebox train", __doc__)
    p.add_argument("--config", help="TOML file (see configs/default.toml); may be left out "
                                    "with --init-from (the checkpoint's own config is used)")
    p.add_argument("--init-from", metavar="CKPT",
                   help="start from this checkpoint's weights (same styles): fine-tuning")
    p.add_argument("--out", required=True, help="run folder: last.pt, log.csv, config.json")
    for key, typ in _FLAGS.items():
        p.add_argument("--" + key.replace("_", "-"), type=typ, dest=key)
    p.add_argument("--compile", action="store_true", help="torch.compile the generator")
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None,
                   help="force bf16 autocast on/off (default: auto, on for CUDA and for CPUs "
                        "with AMX or AVX512-BF16)")
    p.add_argument("--teacher", action="append", default=[], metavar="MODEL",
                   help="distil from this trained model (.pt or .onnx), repeatable: each "
                        "style learns from the first teacher that has it")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key (value parsed as TOML), repeatable")
    p.add_argument("--no-resume", action="store_true", help="ignore an existing OUT/last.pt")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)

    values = {k: getattr(args, k) for k in _FLAGS if getattr(args, k) is not None}
    if args.compile:
        values["compile"] = True
    if args.amp is not None:
        values["amp"] = "on" if args.amp else "off"
    if args.init_from:
        values["init_from"] = args.init_from
    if args.teacher:
        values["teachers"] = args.teacher
    if args.config:
        cfg = TrainConfig.load(args.config, args.set)
    elif args.init_from:
        cfg = TrainConfig.from_checkpoint(read_checkpoint(args.init_from), args.init_from)
        # Its step count, schedule position and time limit are not this run's.
        cfg = cfg.replace(time_limit_min=0.0).override(args.set)
    else:
        raise UserError("give --config FILE (or --init-from CKPT to fine-tune a checkpoint)")
    cfg = cfg.replace(**values)
    summary = train(cfg, args.out, resume=not args.no_resume, progress=not args.no_progress)
    print(f"stylebox train: {summary['stopped']} at step {summary['step']}; "
          f"loss {summary.get('loss', float('nan')):.4g}, "
          f"{summary.get('steps_per_s', 0):.2f} steps/s; checkpoint {summary['checkpoint']}")
    return 0
