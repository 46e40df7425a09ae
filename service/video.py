"""Video files: probe a clip, then stream it decode -> model -> encode with PyAV.

Inputs: whatever FFmpeg's demuxers read (MP4, MOV, WebM, MKV, animated GIF, ...) and
animated WebP (FFmpeg has no animated-WebP decoder, so Pillow reads those). Output: H.264
in MP4 (libx264, yuv420p, even dimensions, `+faststart`: the index is at the front, so a
browser plays the file while it downloads), every frame at its source timestamp (pts and
time base kept, so variable frame rates stay variable), audio copied where MP4 takes it
as it is (AAC, MP3) and re-encoded to AAC otherwise (Opus, Vorbis, PCM, ...).

Three threads, joined by small bounded queues so that memory holds a few frames whatever
the clip's length: one demuxes and decodes (and passes audio packets on in order), the
caller's runs the model (service/stability.py's StreamStylizer, which carries the
normalisation statistics from frame to frame), one encodes and muxes. The result is written
to `<out>.part` and renamed only when complete, so no reader ever sees half a file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, NamedTuple, TypedDict

import av
import numpy as np
from PIL import Image

from stylebox.service.controls import Controls, apply_controls
from stylebox.service.engine import Engine
from stylebox.service.http.errors import (
    CorruptVideoError,
    ImageTooLargeError,
    UnsupportedVideoError,
    VideoTooLargeError,
)
from stylebox.service.sniff import CONTAINERS, VIDEOS, sniff_file
from stylebox.service.stability import StabilityConfig, StreamStylizer
from stylebox.service.tiling import TileConfig

log = logging.getLogger("stylebox.video")

# The encoder. CRF 18 is close to visually lossless for x264, so the codec adds little of
# its own to what the model made (tools that measure flicker import these to tell the
# codec's share); veryfast keeps encoding well below the model's time per frame.
CODEC = "libx264"
CRF = 18
PRESET = "veryfast"
PIX_FMT = "yuv420p"
AUDIO_COPY = frozenset({"aac", "mp3"})  # MP4 holds these as they are
AUDIO_CODEC = "aac"
EXTENSIONS = frozenset({".mp4", ".m4v", ".mov", ".webm", ".mkv", ".gif", ".webp", ".avi"})
_QUEUE = 4  # frames between stages: enough to overlap them, few enough for flat memory
_DECODE_ERRORS = 8  # damaged packets skipped before the clip counts as corrupt
_STILL_FORMATS = ("image2", "_pipe")  # FFmpeg's single-image demuxers (png_pipe, ...)

Progress = Callable[[int], None]  # frames done so far
Infer = Callable[[Callable[[], np.ndarray]], np.ndarray]  # runs one model call


@dataclass(frozen=True)
class VideoLimits:
    max_duration_s: float = 300.0
    max_frames: int = 9000
    max_pixels: int = 1920 * 1088  # a frame as stylized (after max_side)
    max_source_pixels: int = 40_000_000  # a frame as decoded

    @classmethod
    def from_settings(cls, settings: Any) -> VideoLimits:
        return cls(settings.video_max_duration_s, settings.video_max_frames,
                   settings.video_max_pixels, settings.max_pixels)


class RunOptions(TypedDict):
    """`stylize_video`'s arguments that come from the service's settings."""

    momentum: float
    limits: VideoLimits
    max_inference_pixels: int
    tiling: TileConfig | None


def run_options(settings: Any, *, stabilize: bool = True) -> RunOptions:
    """The settings as `stylize_video`'s arguments (`stylize_video(..., **run_options(s))`),
    so the API's jobs and the command line map them the one way; `stabilize=False`
    stylizes every frame on its own."""
    return RunOptions(momentum=settings.video_momentum if stabilize else 0.0,
                      limits=VideoLimits.from_settings(settings),
                      max_inference_pixels=settings.max_inference_pixels,
                      tiling=TileConfig.from_settings(settings))


@dataclass(frozen=True)
class VideoInfo:
    """What probing found: enough to refuse a clip before it queues, and to size the job."""

    container: str  # FFmpeg's demuxer name (mov,mp4,m4a,3gp,3g2,mj2 / matroska,webm / gif) or webp
    codec: str  # the video codec
    width: int  # as decoded
    height: int
    duration_s: float | None
    frames: int  # an estimate (the container's count, else duration x rate)
    fps: float | None  # average frame rate, if the container says
    audio: str | None  # the first audio stream's codec
    reader: str = "av"  # "av" (PyAV) or "pillow" (animated WebP)

    def out_size(self, max_side: int | None) -> tuple[int, int]:
        return output_size(self.width, self.height, max_side)


def output_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """(w, h) of the result: scaled so the longer side is at most max_side, then each side
    rounded down to even (yuv420p halves the chroma planes), at least 2."""
    scale = 1.0 if max_side is None or max(width, height) <= max_side \
        else max_side / max(width, height)
    w, h = max(1, round(width * scale)), max(1, round(height * scale))
    return max(2, w // 2 * 2), max(2, h // 2 * 2)


def probe(path: Path, limits: VideoLimits | None = None,
          max_side: int | None = None) -> VideoInfo:
    """Read the container's header and the first frame; refuse what cannot run.

    415: not a video (random bytes, a still image, no video stream); 422: damaged (opens as
    a container but no frame decodes, an MP4 cut before its index); 413: over `limits`.
    """
    info = _probe_webp(path) if sniff_file(path) == "WEBP" else _probe_av(path)
    if limits is not None:
        check_limits(info, limits, max_side)
    return info


def check_limits(info: VideoInfo, limits: VideoLimits, max_side: int | None) -> None:
    if info.width * info.height > limits.max_source_pixels:
        raise ImageTooLargeError(
            f"the frames are {info.width}x{info.height}, more than {limits.max_source_pixels:,} "
            "pixels", width=info.width, height=info.height,
            max_pixels=limits.max_source_pixels)
    w, h = info.out_size(max_side)
    if w * h > limits.max_pixels:
        raise VideoTooLargeError(
            f"frames of {w}x{h} are more than {limits.max_pixels:,} pixels; pass max_side "
            f"(e.g. max_side=1280) to stylize a smaller copy", width=w, height=h,
            max_pixels=limits.max_pixels)
    if info.duration_s is not None and info.duration_s > limits.max_duration_s:
        raise VideoTooLargeError(
            f"the clip is {info.duration_s:.1f} s long, more than {limits.max_duration_s:g} s",
            duration_s=info.duration_s, max_duration_s=limits.max_duration_s)
    if info.frames > limits.max_frames:
        raise VideoTooLargeError(
            f"the clip has about {info.frames} frames, more than {limits.max_frames}",
            frames=info.frames, max_frames=limits.max_frames)


def _not_video(path: Path, why: str) -> Exception:
    if sniff_file(path) in VIDEOS:  # starts like a clip we read: damage (422), not 415
        return CorruptVideoError(f"the video cannot be read: {why}")
    return UnsupportedVideoError(
        "not a video in a format this server reads (MP4, MOV, WebM, MKV, animated GIF or "
        f"WebP): {why}")


def _probe_av(path: Path) -> VideoInfo:
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except av.error.FFmpegError as e:
        raise _not_video(path, _ffmpeg_reason(e)) from None
    with container:
        fmt = container.format.name
        if not container.streams.video:
            kinds = ", ".join(sorted({s.type for s in container.streams})) or "none"
            raise UnsupportedVideoError(f"the file has no video stream (streams: {kinds})",
                                        container=fmt)
        if any(fmt == f or fmt.endswith(f) for f in _STILL_FORMATS):
            raise UnsupportedVideoError(
                f"a still image ({fmt}), not a video; POST /stylize stylizes images",
                container=fmt)
        vs = container.streams.video[0]
        audio = container.streams.audio[0].codec_context.name \
            if container.streams.audio else None
        rate = vs.average_rate or vs.guessed_rate
        fps = float(rate) if rate else None
        duration = None
        if vs.duration is not None and vs.time_base is not None:
            duration = float(vs.duration * vs.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        first = _first_frame(container, vs, path)
        frames = vs.frames or (round(duration * fps) if duration and fps else 0)
        return VideoInfo(fmt, vs.codec_context.name, first.width, first.height, duration,
                         max(1, frames), fps, audio)


def _first_frame(container: Any, vs: Any, path: Path) -> Any:
    errors = 0
    try:
        for packet in container.demux(vs):
            try:
                for frame in packet.decode():
                    return frame
            except av.error.InvalidDataError:
                errors += 1
                if errors > _DECODE_ERRORS:
                    break
    except av.error.FFmpegError as e:
        raise CorruptVideoError(f"the video cannot be read: {_ffmpeg_reason(e)}") from None
    raise CorruptVideoError("no frame of the video stream decodes (truncated or damaged)")


def _ffmpeg_reason(e: Exception) -> str:
    # FFmpeg's message without the file name (never echo server paths).
    return str(getattr(e, "strerror", None) or e).split(":")[0].strip() or type(e).__name__


def _probe_webp(path: Path) -> VideoInfo:
    try:
        with Image.open(path) as im:
            n = getattr(im, "n_frames", 1)
            if n < 2:
                raise UnsupportedVideoError(
                    "a still WebP image, not an animation; POST /stylize stylizes images",
                    container="webp")
            w, h = im.size
            step = im.info.get("duration") or 100  # ms per frame; Pillow reads it per frame
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise CorruptVideoError(f"the animated WebP cannot be read: {e}") from None
    return VideoInfo("webp", "webp", w, h, n * step / 1000, n, 1000 / step, None, "pillow")


# -- the pipeline --------------------------------------------------------------------------

@dataclass
class VideoResult:
    frames: int
    width: int
    height: int
    seconds: float  # wall time, decode to the renamed file
    cuts: int  # scene cuts the stabilizer detected

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


class Cancelled(Exception):
    """The job was cancelled between two frames."""


# What the threads pass each other, in stream order: the decoder's first item is `_Opened`,
# then `_Frame`s and `_Audio` packets as the demuxer meets them, then `_END`; the model
# thread hands the encoder the same, each frame's `rgb` stylized.
class _Opened(NamedTuple):
    rate: Fraction | None  # the video stream's average frame rate, if the container says
    audio: Any  # the source's audio stream (the encoder's template and decoder), or None


class _Frame(NamedTuple):
    rgb: np.ndarray  # (h, w, 3) uint8 at the output size
    pts: int  # the source timestamp, in `time_base` units
    time_base: Fraction | None


class _Audio(NamedTuple):
    packet: Any  # a demuxed audio packet, copied or re-encoded by the encoder


class _End(NamedTuple):
    pass


_END = _End()
_Item = _Opened | _Frame | _Audio | _End


class _Stop(Exception):
    """Another stage failed or the job stopped: this one leaves quietly."""


def _put(q: queue.Queue, item: _Item, stop: threading.Event) -> None:
    while True:
        if stop.is_set():
            raise _Stop
        try:
            q.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


def _get(q: queue.Queue, stop: threading.Event) -> _Item:
    while True:
        if stop.is_set():
            raise _Stop
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            continue


def _open_av(path: Path) -> Any:
    try:
        return av.open(str(path), metadata_errors="ignore")
    except av.error.FFmpegError as e:
        raise _as_user_error(e) from None


def _frames_av(container: Any, size: tuple[int, int], limits: VideoLimits
               ) -> Iterator[_Item]:
    """`_Opened` first, then a `_Frame` (rgb at `size`, cropped to even) per frame and an
    `_Audio` per audio packet, in demux order. `container` stays open: the audio stream is
    read from it."""
    w, h = size
    vs = container.streams.video[0]
    vs.thread_type = "AUTO"  # frame threads: decoding keeps up with the model
    streams = [vs, *list(container.streams.audio)[:1]]
    yield _Opened(vs.average_rate or vs.guessed_rate, streams[1] if len(streams) > 1 else None)
    errors, last_pts, count = 0, None, 0
    for packet in container.demux(*streams):
        if packet.stream.type == "audio":
            if packet.size:
                yield _Audio(packet)
            continue
        try:
            frames = packet.decode()
        except av.error.InvalidDataError:
            errors += 1
            if errors > _DECODE_ERRORS:
                raise CorruptVideoError(
                    f"more than {_DECODE_ERRORS} damaged packets in the video stream"
                ) from None
            continue
        for frame in frames:
            count += 1
            _check_running(count, frame, vs, limits)
            pts = frame.pts if frame.pts is not None else \
                (last_pts + 1 if last_pts is not None else 0)
            last_pts = pts
            yield _Frame(_rgb_av(frame, w, h), pts, vs.time_base)


def _check_running(count: int, frame: Any, vs: Any, limits: VideoLimits) -> None:
    """The probe's numbers are estimates from the header: hold the clip to the bounds as
    it decodes too."""
    if count > limits.max_frames:
        raise VideoTooLargeError(f"the clip has more than {limits.max_frames} frames",
                                 max_frames=limits.max_frames)
    if frame.pts is not None and vs.time_base is not None and \
            float((frame.pts - (vs.start_time or 0)) * vs.time_base) > limits.max_duration_s + 1:
        raise VideoTooLargeError(f"the clip is longer than {limits.max_duration_s:g} s",
                                 max_duration_s=limits.max_duration_s)
    if frame.width * frame.height > limits.max_source_pixels:
        raise ImageTooLargeError(f"a frame of {frame.width}x{frame.height} is more than "
                                 f"{limits.max_source_pixels:,} pixels")


def _rgb_av(frame: Any, w: int, h: int) -> np.ndarray:
    sw, sh = frame.width, frame.height
    if (sw // 2 * 2, sh // 2 * 2) == (w, h) or (sw, sh) == (w, h):
        rgb = frame.to_ndarray(format="rgb24")  # full size; an odd last row/column is cut
    else:  # max_side: swscale's Lanczos, as the image path uses Lanczos
        rgb = frame.to_ndarray(format="rgb24", width=w, height=h, interpolation="LANCZOS")
    return np.ascontiguousarray(rgb[:h, :w])  # (h, w, 3)


def _frames_webp(path: Path, size: tuple[int, int], limits: VideoLimits
                 ) -> Iterator[_Item]:
    w, h = size
    tb = Fraction(1, 1000)  # Pillow gives each frame's duration in ms
    yield _Opened(None, None)
    with Image.open(path) as im:
        pts = 0
        for i in range(getattr(im, "n_frames", 1)):
            if i + 1 > limits.max_frames:
                raise VideoTooLargeError(f"the clip has more than {limits.max_frames} frames",
                                         max_frames=limits.max_frames)
            im.seek(i)
            rgb = im.convert("RGB")
            if rgb.size[0] // 2 * 2 != w or rgb.size[1] // 2 * 2 != h:
                rgb = rgb.resize((w, h), Image.Resampling.LANCZOS)
            yield _Frame(np.ascontiguousarray(np.asarray(rgb)[:h, :w]), pts, tb)
            pts += int(im.info.get("duration") or 100)


class _Encoder:
    """libx264 MP4 at `path`; audio copied or re-encoded to AAC. Used by one thread."""

    def __init__(self, path: Path, size: tuple[int, int], rate: Fraction | None, as_in: Any,
                 time_base: Fraction | None) -> None:
        self.out = av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"})
        self.vs = self.out.add_stream(CODEC, rate=rate or Fraction(30),
                                      options={"crf": str(CRF), "preset": PRESET})
        self.vs.width, self.vs.height = size
        self.vs.pix_fmt = PIX_FMT
        self.time_base = time_base or Fraction(1, 1000)
        self.vs.time_base = self.vs.codec_context.time_base = self.time_base
        self.last_pts: int | None = None
        self.audio_in, self.audio_out, self.resampler = as_in, None, None
        self.audio_samples = 0
        self.audio_start: int | None = None
        if as_in is not None:
            name = as_in.codec_context.name
            if name in AUDIO_COPY:
                self.audio_out = self.out.add_stream_from_template(as_in)
            else:  # Opus, Vorbis, PCM, ...: browsers' MP4 wants AAC
                rate = as_in.codec_context.sample_rate or 48000
                self.audio_out = self.out.add_stream(AUDIO_CODEC, rate=rate)
                layout = "mono" if as_in.codec_context.channels == 1 else "stereo"
                self.audio_out.layout = layout
                self.audio_out.time_base = Fraction(1, rate)
                self.resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate,
                                                   frame_size=1024)

    def video(self, rgb: np.ndarray, pts: int) -> None:
        if self.last_pts is not None and pts <= self.last_pts:
            pts = self.last_pts + 1  # repeated timestamps (some GIFs): keep them increasing
        self.last_pts = pts
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts, frame.time_base = pts, self.time_base
        self.out.mux(self.vs.encode(frame))

    def audio(self, packet: Any) -> None:
        if self.audio_out is None:
            return
        if self.resampler is None:  # stream copy
            if packet.dts is None:
                return
            packet.stream = self.audio_out
            self.out.mux(packet)
            return
        try:
            frames = self.audio_in.codec_context.decode(packet)
        except av.error.InvalidDataError:
            return  # a damaged audio packet: a moment of silence, not a failed job
        for frame in frames:
            if self.audio_start is None and frame.pts is not None and frame.time_base:
                self.audio_start = max(0, round(frame.pts * frame.time_base
                                                * self.audio_out.rate))
            self._encode_audio(self.resampler.resample(frame))

    def _encode_audio(self, frames: list) -> None:
        for f in frames:
            f.pts = (self.audio_start or 0) + self.audio_samples
            f.time_base = Fraction(1, self.audio_out.rate)
            self.audio_samples += f.samples
            self.out.mux(self.audio_out.encode(f))

    def close(self) -> None:
        self.out.mux(self.vs.encode(None))
        if self.resampler is not None:
            self._encode_audio(self.resampler.resample(None))
            self.out.mux(self.audio_out.encode(None))
        self.out.close()

    def abort(self) -> None:
        with contextlib.suppress(Exception):  # the .part file is deleted anyway
            self.out.close()


def _direct(fn: Callable[[], np.ndarray]) -> np.ndarray:
    return fn()


def stylize_video(src: Path, dst: Path, engine: Engine, weights: np.ndarray, *,
                  controls: Controls | None = None, momentum: float = 0.9,
                  limits: VideoLimits | None = None, info: VideoInfo | None = None,
                  max_inference_pixels: int = 8_500_000, tiling: TileConfig | None = None,
                  progress: Progress | None = None,
                  cancelled: Callable[[], bool] | None = None,
                  infer: Infer = _direct) -> VideoResult:
    """Stylize the clip at `src` into an MP4 at `dst` (written as `dst`.part, then renamed).

    `momentum` 0 stylizes every frame on its own; `infer` runs each model call (the service
    passes one that holds an inference slot); `cancelled` is asked before every frame.
    Raises Cancelled, or a StyleboxError for a clip that fails part-way (corrupt, over a
    bound); `dst` is then untouched and the .part file gone.
    """
    controls = controls or Controls()
    limits = limits or VideoLimits()
    info = info or probe(src, limits, controls.max_side)
    size = info.out_size(controls.max_side)
    part = dst.with_name(dst.name + ".part")
    stylizer = StreamStylizer(engine, StabilityConfig(momentum=momentum),
                              max_inference_pixels, tiling)
    weights = np.asarray(weights, np.float32)
    stop = threading.Event()
    decoded: queue.Queue = queue.Queue(_QUEUE)
    styled: queue.Queue = queue.Queue(_QUEUE)
    failure: list[BaseException] = []
    t0 = time.perf_counter()

    def decode() -> None:
        items = _frames_webp(src, size, limits) if source is None else \
            _frames_av(source, size, limits)
        try:
            for item in items:
                _put(decoded, item, stop)
            _put(decoded, _END, stop)
        except _Stop:
            pass
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
            failure.append(_as_user_error(e))
            stop.set()

    def encode(rate: Fraction | None, as_in: Any, tb: Fraction | None) -> None:
        enc = None
        try:
            enc = _Encoder(part, size, rate, as_in, tb)
            while True:
                item = _get(styled, stop)
                if isinstance(item, _Frame):
                    enc.video(item.rgb, item.pts)
                elif isinstance(item, _Audio):
                    enc.audio(item.packet)
                else:
                    enc.close()
                    enc = None
                    return
        except _Stop:
            pass
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
            failure.append(e)
            stop.set()
        finally:
            if enc is not None:
                enc.abort()

    # The source is opened here and closed once both threads have ended: the encoder thread
    # reads its audio stream (the template, the decoder), which FFmpeg frees with the
    # container, and a short clip decodes to the end before the encoder starts.
    source = None if info.reader == "pillow" else _open_av(src)
    threads = [threading.Thread(target=decode, name="video-decode", daemon=True)]
    frames = 0
    try:
        threads[0].start()
        opened = _get(decoded, stop)
        if not isinstance(opened, _Opened):
            raise CorruptVideoError("the video stream could not be opened")
        pending: list[_Audio] = []  # audio before the first frame: its time base is needed
        item = _get(decoded, stop)
        while isinstance(item, _Audio):
            pending.append(item)
            item = _get(decoded, stop)
        if not isinstance(item, _Frame):
            raise CorruptVideoError("no frame of the video stream decodes")
        threads.append(threading.Thread(target=encode,
                                        args=(opened.rate, opened.audio, item.time_base),
                                        name="video-encode", daemon=True))
        threads[1].start()
        for a in pending:
            _put(styled, a, stop)
        while not isinstance(item, _End):
            if isinstance(item, _Frame):
                if cancelled is not None and cancelled():
                    raise Cancelled
                rgb = item.rgb
                out = infer(lambda rgb=rgb: stylizer(rgb, weights))
                if controls.changes_pixels:
                    out = apply_controls(rgb, out, controls)
                _put(styled, item._replace(rgb=out), stop)
                frames += 1
                if progress is not None:
                    progress(frames)
            else:
                _put(styled, item, stop)
            item = _get(decoded, stop)
        _put(styled, _END, stop)
        threads[1].join()
        if failure:
            raise failure[0]
        os.replace(part, dst)
    except _Stop:
        threads[-1].join(timeout=5)
        raise failure[0] if failure else Cancelled from None
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
        part.unlink(missing_ok=True)
        if source is not None and not any(t.is_alive() for t in threads):
            source.close()  # else the thread's streams keep it until that thread lets go
    return VideoResult(frames, size[0], size[1], time.perf_counter() - t0, stylizer.cuts)


def _as_user_error(e: BaseException) -> BaseException:
    if isinstance(e, av.error.FFmpegError):
        return CorruptVideoError(f"the video cannot be read: {_ffmpeg_reason(e)}")
    if isinstance(e, (OSError, SyntaxError, ValueError)):  # Pillow's, reading a WebP
        return CorruptVideoError(f"the video cannot be read: {e}")
    return e


def is_video_file(path: Path) -> bool:
    """A clip for `stylebox stylize`: a video container by extension or by its first bytes,
    or an animated GIF/WebP (a still GIF/WebP is an image)."""
    suffix = path.suffix.lower()
    if suffix in (".gif", ".webp") or (path.is_file() and sniff_file(path) in ("GIF", "WEBP")):
        try:
            with Image.open(path) as im:
                return getattr(im, "n_frames", 1) > 1
        except (OSError, SyntaxError, ValueError):
            return False
    if suffix in EXTENSIONS:
        return True
    if not path.is_file():
        return False
    return sniff_file(path) in CONTAINERS
