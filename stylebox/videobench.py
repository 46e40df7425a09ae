"""Frames per second of a video file end to end (decode + model + encode), and memory.

`stylebox video-bench` runs the pipeline POST /videos and `stylebox stylize clip.mp4` run:

    stylebox video-bench --sizes 640x480,1280x720 --frames 90
    stylebox video-bench --sizes 1920x1080 --frames 1800 --rss    # memory over a long clip

The clips are synthesised here (`make_clip`: moving gradients and shapes, H.264 in MP4 with
an AAC tone, so audio is copied as in a phone clip), written to a temporary folder, and
stylized with the model as the service would; one JSON line per size. `--rss` samples the
process's resident memory while the clip runs and reports it at each tenth of the clip: a
flat series is what bounded queues promise, a rising one a leak.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from stylebox.errors import UserError, doc_parser
from stylebox.procs import rss_kib
from stylebox.samples import synthetic_photo


def make_clip(path: Path, width: int = 64, height: int = 48, frames: int = 10,
              fps: int = 10, *, codec: str = "libx264", container: str | None = None,
              audio: str | None = None, pts: list[int] | None = None,
              time_base: Fraction | None = None, faststart: bool = False) -> Path:
    """Write a clip: `frames` frames of a drifting gradient with a moving square
    (`synthetic_photo` with `frame` and `square`), `codec` video in `container` (from the
    suffix when None), optional `audio` (aac, mp3, libopus, libvorbis ...) with a 440 Hz
    tone as long as the video, optional explicit `pts` in `time_base` (variable rate)."""
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", format=container, options=options) as out:
        vs = out.add_stream(codec, rate=fps)
        vs.width, vs.height = width, height
        vs.pix_fmt = "yuv420p" if codec not in ("gif",) else "rgb8"
        if codec == "libx264":
            vs.options = {"preset": "ultrafast"}
        tb = time_base or Fraction(1, fps)
        vs.codec_context.time_base = tb
        a = None
        if audio:
            rate = 48000 if audio in ("libopus", "opus") else 44100
            a = out.add_stream(audio, rate=rate)
            a.layout = "stereo"
        for i in range(frames):
            rgb = synthetic_photo(width, height, frame=i, square=True)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = pts[i] if pts is not None else i
            frame.time_base = tb
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
        if a is not None:
            _tone(out, a, frames / fps)
    return path


def _tone(out: av.container.OutputContainer, stream: av.AudioStream, seconds: float) -> None:
    rate = stream.codec_context.sample_rate
    size = stream.codec_context.frame_size or 1024
    fmt = stream.codec_context.format.name
    total, done = int(seconds * rate), 0
    while done < total:
        n = min(size, total - done)
        t = (np.arange(done, done + n) / rate).astype(np.float32)
        wave = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        planar = np.stack([wave, wave])  # (2, n)
        if fmt == "s16":
            data = (planar.T.reshape(1, -1) * 32767).astype(np.int16)
        elif fmt == "s16p":
            data = (planar * 32767).astype(np.int16)
        elif fmt == "flt":
            data = planar.T.reshape(1, -1)
        else:  # fltp
            data = planar
        frame = av.AudioFrame.from_ndarray(data, format=fmt, layout="stereo")
        frame.sample_rate, frame.pts, frame.time_base = rate, done, Fraction(1, rate)
        out.mux(stream.encode(frame))
        done += n
    out.mux(stream.encode(None))


def _sample(samples: list[float], done: threading.Event) -> None:
    while not done.wait(0.2):
        samples.append(rss_kib()[0] / 1024)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    from stylebox.service.cli import engine_for_cli, settings_for_cli
    from stylebox.service.settings import parse_size
    from stylebox.service.styles import parse_style_spec
    from stylebox.service.video import VideoLimits, run_options, stylize_video

    p = doc_parser("stylebox video-bench", __doc__)
    p.add_argument("--model", help="ONNX model file (STYLEBOX_MODEL_PATH)")
    p.add_argument("--sizes", default="640x480,1280x720", help="WxH list, comma-separated")
    p.add_argument("--frames", type=int, default=90, help="frames per clip (30 per second)")
    p.add_argument("--style", default=None, help="style spec (default: the model's first)")
    p.add_argument("--no-stabilize", action="store_true", help="every frame on its own")
    p.add_argument("--rss", action="store_true",
                   help="sample resident memory through the run (a long clip shows a leak)")
    args = p.parse_args(argv)
    if args.frames < 1:
        p.error("--frames must be at least 1")
    settings = settings_for_cli(model_path=args.model)
    engine = engine_for_cli(settings)
    mix = parse_style_spec(args.style or engine.style_names[0], engine.style_names)
    # The service's settings, as a job runs them, without the job bounds (any size is timed).
    options = run_options(settings, stabilize=not args.no_stabilize)
    options["limits"] = VideoLimits(max_duration_s=1e9, max_frames=10**9, max_pixels=10**9,
                                    max_source_pixels=settings.max_pixels)
    try:
        sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError as e:
        raise UserError(str(e)) from None
    engine.warmup([(h, w) for h, w in sizes])
    with tempfile.TemporaryDirectory() as tmp:
        for h, w in sizes:
            src = make_clip(Path(tmp) / f"in-{w}x{h}.mp4", w, h, args.frames, 30, audio="aac")
            samples: list[float] = []
            done = threading.Event()

            sampler = threading.Thread(target=_sample, args=(samples, done), daemon=True)
            rss0 = rss_kib()[0] / 1024
            if args.rss:
                sampler.start()
            model_s: list[float] = []

            def timed(fn, model_s=model_s):  # the model's share of each frame
                t = time.perf_counter()
                out = fn()
                model_s.append(time.perf_counter() - t)
                return out

            t0 = time.perf_counter()
            res = stylize_video(src, Path(tmp) / "out.mp4", engine,
                                mix.vector(engine.style_names), infer=timed, **options)
            seconds = time.perf_counter() - t0
            done.set()
            row = {"size": f"{w}x{h}", "frames": res.frames, "seconds": round(seconds, 2),
                   "fps": round(res.frames / seconds, 2),
                   # Model time alone per frame: the rest of seconds/frames is decoding,
                   # encoding and colour conversion not hidden behind it by the threads.
                   "model_ms_per_frame": round(1000 * sum(model_s) / max(1, len(model_s)), 1),
                   "load_avg_1min": round(os.getloadavg()[0], 2), "model": engine.card.name,
                   "engine": f"{engine.backend} {engine.precision}", "cpu": cpu_model(),
                   "cores": os.cpu_count(), "stabilize": not args.no_stabilize}
            if args.rss:
                sampler.join()
                tenths = [samples[min(len(samples) - 1, len(samples) * k // 10)]
                          for k in range(1, 11)] if samples else []
                row |= {"rss_start_mb": round(rss0), "rss_peak_mb": round(max(samples or [0])),
                        "rss_by_tenth_mb": [round(x) for x in tenths]}
            print(json.dumps(row), flush=True)
    return 0
