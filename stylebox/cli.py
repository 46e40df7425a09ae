"""`stylebox COMMAND ...`: one entry point, each command imported only when used.

Lazy imports keep `stylebox serve` and `stylebox stylize` free of torch. Without the train
extra, a torch command says which extra it needs, and its `--help` still prints its options
(stylebox/helponly.py). Commands raise `UserError`s (stylebox/errors.py) for what the user
can fix; `main` prints each as one line, `stylebox COMMAND: message` on stderr, and returns
its exit code. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable

from stylebox.errors import UserError, report

# The `train` extra's packages (pyproject.toml): a command whose import misses one needs it.
TRAIN_EXTRA = ("torch", "torchvision", "onnx", "onnxscript", "tqdm")

# command -> (module under `stylebox.`, function, one-line help). Modules under training/ and
# model/export need the `train` extra (torch); the rest run on the service dependencies alone.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "train": ("training.cli", "main", "train a multi-style generator (needs the train extra)"),
    "export": ("model.export", "main", "export a checkpoint to ONNX and verify it"),
    "serve": ("service.cli", "serve_main", "run the REST service"),
    "stylize": ("service.cli", "stylize_main", "stylize image and video files"),
    "bench": ("bench", "main", "time models on every engine against the full peer"),
    "video-bench": ("videobench", "main",
                    "frames per second of a video file (decode + model + encode), memory"),
    "live-bench": ("livebench", "main",
                   "live camera FPS and latency over the real WebSocket, per working size"),
    "precision": ("precision", "main",
                  "how far bf16/f16 (OpenVINO, or emulated) moves the pictures vs f32"),
    "train-bench": ("training.stepbench", "main",
                    "seconds per training step by crop, batch, precision and layout"),
    "flicker": ("flicker", "main",
                "temporal stability on clips with known motion (needs the train extra)"),
    "prune": ("training.prune", "main",
              "evolutionary channel pruning of a trained generator, then fine-tuning"),
    "soak": ("soak", "main", "long mixed load against a live server: 5xx, hangs, memory"),
    "tile-demo": ("tiledemo", "main", "a large image tiled vs downscaled: crops and timings"),
    "steady-frontier": ("steady", "main",
                        "stability against style for candidate models: table and plot"),
    "compare": ("compare", "main", "several models side by side on the same photos and styles"),
    "frontier": ("frontier", "main",
                 "candidate networks side by side: size, ms per engine, eval losses, pictures"),
    "eval": ("training.eval", "main", "style/content loss table and gallery for an ONNX model"),
    "add-style": ("training.add_style", "main", "add a style by training only its γ/β row"),
    "paint-demo": ("paintdemo", "main",
                   "a new style through the page, end to end: timeline and screenshots"),
    "worker": ("training.worker", "main",
               "run trainer jobs (POST /styles, /optimize) for the servers (train extra)"),
    "optimize": ("training.optimize", "main",
                 "best quality for one photo: optimise it from the model's output (Gatys)"),
    "remove-style": ("model.edit", "remove_main", "remove a style from a checkpoint"),
    "rename-style": ("model.edit", "rename_main", "rename or retitle a style in a checkpoint"),
}


def _usage() -> str:
    lines = ["usage: stylebox COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<13} {help_}" for name, (_, _, help_) in COMMANDS.items()]
    lines += ["", "`stylebox COMMAND --help` for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd not in COMMANDS:
        print(f"stylebox: unknown command {cmd!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    try:
        run = _command(cmd)
    except NeedsTrainExtra as e:
        if _asks_help(rest):  # the options are readable before installing torch
            from stylebox.helponly import print_help

            if print_help(*COMMANDS[cmd][:2], TRAIN_EXTRA):
                print(f"\nstylebox {cmd} {e}")
                return 0
        report(f"stylebox {cmd}", e)
        return e.exit_code
    try:
        return int(run(rest) or 0)
    except UserError as e:
        report(f"stylebox {cmd}", e)
        return e.exit_code


class NeedsTrainExtra(UserError):
    """A torch command where the `train` extra is not installed."""


def _command(cmd: str) -> Callable[[list[str]], int | None]:
    module, func, _ = COMMANDS[cmd]
    try:
        return getattr(importlib.import_module(f"stylebox.{module}"), func)
    except ModuleNotFoundError as e:
        if e.name in TRAIN_EXTRA:
            raise NeedsTrainExtra(f"needs the `train` extra ({e.name} is missing): "
                                  "pip install -e '.[train]'") from None
        raise


def _asks_help(argv: list[str]) -> bool:
    """-h or --help among the options (after `--` it would be an argument)."""
    options = argv[:argv.index("--")] if "--" in argv else argv
    return "-h" in options or "--help" in options
