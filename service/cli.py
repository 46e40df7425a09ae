"""`stylebox serve` and `stylebox stylize`: the service's command lines (no torch).

Both read the same `STYLEBOX_*` settings (see service.settings); flags override them.
Errors are raised as `UserError`s for the `stylebox` entry point to print as one line.
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import io
import sys
import time
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from stylebox.errors import UserError, report
from stylebox.service.backends import open_engine, seed_model
from stylebox.service.controls import QUALITY, ControlError, Controls
from stylebox.service.engine import Engine, EngineConfigError, ModelLoadError
from stylebox.service.http.errors import StyleboxError, StyleSpecError
from stylebox.service.imaging import EXTENSIONS, set_pixel_limit
from stylebox.service.models import extra_model_error, settings_for
from stylebox.service.pipeline import OneImage, image_path, run_steps
from stylebox.service.settings import (
    DEFAULT_MODEL,
    EngineName,
    OutputFormat,
    Precision,
    Settings,
    choices,
)
from stylebox.service.styles import parse_style_spec
from stylebox.service.video import is_video_file

_SUFFIX_FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".webp": "webp"}
_WRITES = ".png, .jpg/.jpeg or .webp"


# Where the shipped models are when stylebox runs from its checkout (an editable install).
SHIPPED_MODELS = Path(__file__).resolve().parents[1] / "models"


def missing_model_message(path: str) -> str:
    """One line: which file was tried (absolute, when the path is relative to the current
    folder), how to point at another, where the shipped ones are, how to make one."""
    p = Path(path)
    where = "" if p.is_absolute() else f" (relative to the current folder: {p.resolve()})"
    shipped = SHIPPED_MODELS / p.name
    if shipped.is_file() and shipped.resolve() != p.resolve():
        ships = f"; the checkout's models/ folder has {shipped}"
    elif SHIPPED_MODELS.is_dir():
        ships = f"; the shipped models are in {SHIPPED_MODELS}"
    else:
        ships = "; the stylebox checkout ships trained models in its models/ folder"
    return (f"model file '{path}' not found{where}; pass --model PATH or set "
            f"STYLEBOX_MODEL_PATH{ships}; or make one with `stylebox train --config "
            f"configs/default.toml --out runs/a0.25` then `stylebox export runs/a0.25/last.pt "
            f"-o {path}`")


def settings_for_cli(**overrides: object) -> Settings:
    """Settings from flags (None: not given), a bad value as one UserError line."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as e:
        errs = "; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())
        raise UserError(f"invalid setting: {errs}") from None


def engine_for_cli(settings: Settings) -> Engine:
    """The engine, loaded up front, so a bad file is one line (exit 1), not a traceback."""
    seed_model(settings)  # a fresh model volume gets MODEL_SEED first
    if not Path(settings.model_path).exists():  # a folder or a bad file: the engine says which
        raise ModelLoadError(missing_model_message(settings.model_path))
    try:
        return open_engine(settings)
    except EngineConfigError:
        raise  # already one line that names the fix
    except ModelLoadError as e:
        raise ModelLoadError(f"cannot load the model: {e}") from None


def models_for_cli(settings: Settings) -> dict[str, Engine]:
    """Every served model (service/models.py), loaded up front as `engine_for_cli` loads the
    default one; a bad EXTRA_MODELS file is one line that names its item."""
    extra = {n: p for n, p in settings.model_paths.items() if n != DEFAULT_MODEL}

    for name, path in extra.items():  # a missing file: at once, before any model loads
        if not Path(path).exists():
            raise extra_model_error(name, ModelLoadError(f"model file '{path}' not found"))
    engines = {DEFAULT_MODEL: engine_for_cli(settings)}
    for name in extra:
        try:
            engines[name] = open_engine(settings_for(settings, name))
        except ModelLoadError as e:  # EngineConfigError too: the same settings serve each
            raise extra_model_error(name, e) from None
    return engines


def serve_main(argv: list[str] | None = None) -> int:
    prog = "stylebox serve"
    p = argparse.ArgumentParser(prog=prog, description="Run the stylebox REST service.")
    p.add_argument("--model", help="ONNX model file (STYLEBOX_MODEL_PATH)")
    p.add_argument("--host",
                   help="interface to bind (STYLEBOX_HOST, default 127.0.0.1; 0.0.0.0 = all)")
    p.add_argument("--port", type=int, help="TCP port (STYLEBOX_PORT, default 8000)")
    p.add_argument("--providers", help="comma-separated ONNX Runtime execution providers")
    p.add_argument("--engine", choices=choices(EngineName),
                   help="inference runtime (STYLEBOX_ENGINE, default auto)")
    p.add_argument("--precision", choices=choices(Precision),
                   help="inference precision (STYLEBOX_PRECISION, default auto)")
    p.add_argument("--log-level", default="info",
                   choices=["critical", "error", "warning", "info", "debug"])
    args = p.parse_args(argv)
    settings = settings_for_cli(model_path=args.model, host=args.host, port=args.port,
                                providers=args.providers, engine=args.engine,
                                precision=args.precision)
    from stylebox.service.lifecycle import configure_logging, serve

    configure_logging(args.log_level, settings.log_format)  # STYLEBOX_LOG_FORMAT=text|json
    # A crash in native code (a runtime, FFmpeg) leaves every thread's Python stack on stderr
    # instead of a bare exit: what the server was doing is in its log. Not over a handler the
    # caller set (a test runner's), and not where stderr has no file to write to.
    if not faulthandler.is_enabled():
        with contextlib.suppress(io.UnsupportedOperation, ValueError):
            faulthandler.enable()
    engines = models_for_cli(settings)
    engine = engines[DEFAULT_MODEL]

    from stylebox.service.app import create_app

    app = create_app(settings, engines=engines)
    extra = [f"{n} ({e.card.name}@{e.card.version})" for n, e in engines.items()
             if n != DEFAULT_MODEL]
    print(f"stylebox: serving {engine.card.name}@{engine.card.version} "
          f"({', '.join(engine.style_names)}) on {engine.backend} {engine.precision} "
          f"{'and ' + ', '.join(extra) + ' (?model=NAME) ' if extra else ''}"
          f"at http://{settings.host}:{settings.port} "
          f"- API docs at /docs", flush=True)
    # SIGTERM: /readyz turns 503, drain_s later the listener closes, in-flight work ends.
    serve(app, settings, log_level=args.log_level)
    return 0


def _to_folder(inputs: list[Path], out: Path) -> bool:
    """Whether OUT is a folder: several inputs, an existing folder, or a name ending in /."""
    return len(inputs) > 1 or out.is_dir() or str(out).endswith(("/", "\\"))


def _outputs(inputs: list[Path], out: Path, fmt: str | None, default: str,
             videos: list[bool] | None = None) -> list[tuple[Path, str]]:
    """(file, format) per input; format "mp4" for a video. One output file's suffix picks
    its format; a suffix that stylebox cannot write (out.tif), or one that contradicts
    --format, is a usage error: the file would hold other bytes than its name says."""
    videos = videos or [False] * len(inputs)
    if not _to_folder(inputs, out):
        if videos[0]:
            return [(_video_output(inputs[0], out), "mp4")]
        suffix = out.suffix.lower()
        named = _SUFFIX_FORMATS.get(suffix)
        if fmt is None and suffix and named is None:
            raise UserError(f"-o {out}: cannot write {suffix} files; stylebox writes {_WRITES} "
                            "(name the output so, or give --format png|jpeg|webp to write "
                            "that format under this name)")
        if fmt is not None and named is not None and named != fmt:
            raise UserError(f"-o {out} names a {suffix} file but --format is {fmt}; drop "
                            "--format or change the suffix")
        return [(out, fmt or named or default)]
    fmt = fmt or default
    result, taken = [], set()
    for src, video in zip(inputs, videos, strict=True):
        name, n = src.stem, 1
        while name in taken:  # a.png and other/a.png both given: a.png, a-2.png
            n += 1
            name = f"{src.stem}-{n}"
        taken.add(name)
        result.append((out / (name + ".mp4"), "mp4") if video else
                      (out / (name + EXTENSIONS[fmt]), fmt))
    return result


def _video_output(src: Path, out: Path) -> Path:
    """A clip's one output file: an .mp4 name."""
    if out.suffix.lower() not in (".mp4", ".m4v"):
        raise UserError(f"-o {out}: {src} is a video, written as H.264 MP4; name the output "
                        "*.mp4 (or give a folder)")
    return out


class _ProgressLine:
    """`clip.mp4: 120/300 frames (40%), 11.2 FPS, ETA 16 s` on stderr, redrawn in place at
    most 4 times a second."""

    def __init__(self, name: str, total: int) -> None:
        self.name, self.total, self.t0, self.shown = name, total, time.perf_counter(), 0.0

    def __call__(self, done: int, final: bool = False) -> None:
        now = time.perf_counter()
        if not final and now - self.shown < 0.25:
            return
        self.shown = now
        total = max(self.total, done)
        fps = done / (now - self.t0) if now > self.t0 else 0.0
        eta = f", ETA {(total - done) / fps:.0f} s" if fps and not final else ""
        pct = 100 if final else min(99, 100 * done // max(1, total))
        sys.stderr.write(f"\r{self.name}: {done}/{total} frames ({pct}%), {fps:.1f} FPS"
                         f"{eta}\x1b[K" + ("\n" if final else ""))
        sys.stderr.flush()


def _stylize_clip(engine: Engine, settings: Settings, src: Path, dst: Path,
                  weights: np.ndarray, controls: Controls, stabilize: bool) -> str:
    """One clip to `dst` with a progress line; returns the summary for stdout."""
    from stylebox.service.video import probe, run_options, stylize_video

    options = run_options(settings, stabilize=stabilize)  # as the API's jobs run
    info = probe(src, options["limits"], controls.max_side)
    line = _ProgressLine(str(src), info.frames)
    res = stylize_video(src, dst, engine, weights, controls=controls, info=info,
                        progress=line, **options)
    line(res.frames, final=True)
    return (f"{src} -> {dst} ({res.width}x{res.height}, {res.frames} frames, "
            f"{res.fps:.1f} FPS)")


def stylize_main(argv: list[str] | None = None) -> int:
    prog = "stylebox stylize"
    p = argparse.ArgumentParser(
        prog=prog, description="Stylize image and video files with a model. A video (MP4, "
        "MOV, WebM, MKV, AVI, animated GIF or WebP) is written as H.264 MP4.")
    p.add_argument("inputs", nargs="+", type=Path, help="image or video files")
    p.add_argument("-s", "--style", required=True, help="e.g. candy or candy:0.7,mosaic:0.3")
    p.add_argument("-o", "--out", required=True, type=Path,
                   help="output file (one input) or directory (several inputs)")
    p.add_argument("--format", choices=[*choices(OutputFormat), "jpg"],
                   help=f"output format (default: from OUT's suffix, {_WRITES}; for a folder "
                        "or no suffix STYLEBOX_DEFAULT_FORMAT, png)")
    p.add_argument("--quality", type=int, default=90,
                   help=f"JPEG/WebP quality, {QUALITY.low}-{QUALITY.high}")
    p.add_argument("--strength", type=float, default=1.0,
                   help="how much style, 0 (the photo) to 1 (full style; default)")
    p.add_argument("--preserve-color", action="store_true",
                   help="keep the photo's colours, take only the style's lightness")
    p.add_argument("--max-side", type=int,
                   help="downscale so the longer side is at most this many pixels first")
    p.add_argument("--no-stabilize", action="store_true",
                   help="videos: stylize every frame on its own (by default the normalisation "
                        "statistics are carried from frame to frame, which flickers less)")
    p.add_argument("--model", help="ONNX model file (STYLEBOX_MODEL_PATH)")
    args = p.parse_args(argv)
    try:  # the API's bounds and messages
        QUALITY.check(args.quality)
        controls = Controls(args.strength, args.preserve_color, args.max_side)
    except ControlError as e:
        p.error(e.detail)
    settings = settings_for_cli(model_path=args.model)
    set_pixel_limit(settings.max_pixels)
    fmt = "jpeg" if args.format == "jpg" else args.format
    videos = [is_video_file(src) for src in args.inputs]
    outputs = _outputs(args.inputs, args.out, fmt, settings.default_format,
                       videos)  # before any work
    engine = engine_for_cli(settings)
    try:
        mix = parse_style_spec(args.style, engine.style_names)
    except StyleSpecError as e:  # its detail shows the API's syntax (style=...): show -s
        raise UserError(f"-s {args.style[:80]!r}: {e.reason}; expected e.g. -s candy or "
                        f"-s candy:0.7,mosaic:0.3 (valid styles: {', '.join(e.valid)})") from None
    if _to_folder(args.inputs, args.out):
        args.out.mkdir(parents=True, exist_ok=True)
    # A bad file is reported and skipped, one line each in the entry point's format, so the
    # good ones are still written; any failure makes the exit code a user error's.
    failed = 0
    for src, (dst, out_fmt) in zip(args.inputs, outputs, strict=True):
        if out_fmt == "mp4":
            try:
                print(_stylize_clip(engine, settings, src, dst, mix.vector(engine.style_names),
                                    controls, not args.no_stabilize))
            except KeyboardInterrupt:  # the pipeline deleted its .part file on the way out
                sys.stderr.write(f"\n{prog}: interrupted; {dst} was not written\n")
                return 130
            except OSError as e:
                report(prog, f"cannot read or write {e.filename or src}: {e.strerror or e}")
                failed += 1
            except StyleboxError as e:
                sys.stderr.write("\n")
                report(prog, f"{src}: {e.detail}")
                failed += 1
            continue
        try:
            made = run_steps(image_path(src.read_bytes(), OneImage(engine, settings),
                                        mix.vector(engine.style_names), controls,
                                        settings=settings, fmt=out_fmt, quality=args.quality))
            dst.write_bytes(made.body)
        except OSError as e:
            report(prog, f"cannot read or write {e.filename or src}: {e.strerror or e}")
            failed += 1
            continue
        except StyleboxError as e:
            report(prog, f"{src}: {e.detail}")
            failed += 1
            continue
        w, h = made.size
        res = made.stylized
        tiled = f", {res.tiles} tiles" if res.tiles else ""
        print(f"{src} -> {dst} ({w}x{h}, {mix.spec}, {res.inference_ms:.0f} ms{tiled})")
    return UserError.exit_code if failed else 0
