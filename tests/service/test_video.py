"""service/video.py: probing, the decode -> model -> encode pipeline, its bounds and bad
inputs, and `stylebox stylize` on clips. Clips are made here with PyAV (stylebox.videobench's
make_clip), a few frames of 32-64 px each, and stylized by the tiny model."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from stylebox.procs import ROOT, service_env
from stylebox.samples import synthetic_photo
from stylebox.service.controls import Controls
from stylebox.service.http.errors import (
    CorruptVideoError,
    UnsupportedVideoError,
    VideoTooLargeError,
)
from stylebox.service.video import (
    CRF,
    PRESET,
    Cancelled,
    VideoLimits,
    is_video_file,
    output_size,
    probe,
    stylize_video,
)
from stylebox.videobench import make_clip
from tests.conftest import png


def read_back(path: Path) -> tuple[list[float], list[np.ndarray], dict]:
    """(frame times in s, frames as RGB, stream facts) of a written clip."""
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        facts = {"format": c.format.name, "codec": vs.codec_context.name,
                 "pix_fmt": vs.codec_context.pix_fmt,
                 "audio": c.streams.audio[0].codec_context.name if c.streams.audio else None,
                 "audio_s": float(c.streams.audio[0].duration * c.streams.audio[0].time_base)
                 if c.streams.audio else None}
        times, frames = [], []
        for f in c.decode(vs):
            times.append(float(f.pts * f.time_base))
            frames.append(f.to_ndarray(format="rgb24"))
    return times, frames, facts


def source_times(path: Path) -> list[float]:
    with av.open(str(path)) as c:
        return [float(f.pts * f.time_base) for f in c.decode(video=0)]


@pytest.fixture
def weights(engine) -> np.ndarray:
    return engine.one_hot(0)


def test_mp4_with_aac_frames_size_timing_and_audio_copied(tmp_path, engine, weights):
    src = make_clip(tmp_path / "in.mp4", 64, 48, 12, 10, audio="aac")
    res = stylize_video(src, tmp_path / "out.mp4", engine, weights)
    times, frames, facts = read_back(tmp_path / "out.mp4")
    assert res.frames == len(frames) == 12 and (res.width, res.height) == (64, 48)
    assert frames[0].shape == (48, 64, 3)
    assert times == pytest.approx(source_times(src), abs=1e-3)
    assert facts["codec"] == "h264" and facts["pix_fmt"] == "yuv420p"
    assert facts["audio"] == "aac" and facts["audio_s"] == pytest.approx(1.2, abs=0.1)
    data = (tmp_path / "out.mp4").read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")  # faststart: playable while downloading
    assert not (tmp_path / "out.mp4.part").exists()
    assert isinstance(CRF, int) and PRESET


def test_webm_opus_odd_size_becomes_even_with_aac(tmp_path, engine, weights):
    src = make_clip(tmp_path / "in.webm", 65, 49, 8, 10, codec="libvpx-vp9", audio="libopus")
    info = probe(src)
    assert (info.width, info.height, info.audio) == (65, 49, "opus")
    res = stylize_video(src, tmp_path / "out.mp4", engine, weights)
    times, frames, facts = read_back(tmp_path / "out.mp4")
    assert (res.width, res.height) == (64, 48) and frames[0].shape == (48, 64, 3)
    assert len(frames) == 8 and facts["audio"] == "aac"  # Opus re-encoded for MP4 players
    assert times == pytest.approx(source_times(src), abs=1e-3)


def test_variable_frame_rate_keeps_each_timestamp(tmp_path, engine, weights):
    pts = [0, 1, 3, 7, 8, 20]
    src = make_clip(tmp_path / "vfr.mkv", 32, 32, len(pts), 10, pts=pts,
                    time_base=Fraction(1, 10))
    stylize_video(src, tmp_path / "out.mp4", engine, weights)
    times, _, _ = read_back(tmp_path / "out.mp4")
    assert times == pytest.approx([p / 10 for p in pts], abs=1e-3)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animated_gif_and_webp(tmp_path, engine, weights, fmt):
    frames = [Image.fromarray(synthetic_photo(40, 30, frame=i, square=True)) for i in range(5)]
    src = tmp_path / f"a.{fmt.lower()}"
    frames[0].save(src, fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert is_video_file(src)
    res = stylize_video(src, tmp_path / "out.mp4", engine, weights)
    times, out, _ = read_back(tmp_path / "out.mp4")
    assert res.frames == len(out) == 5 and out[0].shape == (30, 40, 3)
    assert times == pytest.approx([0, 0.1, 0.2, 0.3, 0.4], abs=1e-3)


def test_controls_are_applied(tmp_path, engine):
    src = make_clip(tmp_path / "in.mp4", 64, 48, 4, 10)
    _, original, _ = read_back(src)
    outs = {}
    for name, controls, w in [("photo", Controls(strength=0.0), engine.one_hot(0)),
                              ("candy", Controls(), engine.one_hot(0)),
                              ("mosaic", Controls(), engine.one_hot(1)),
                              ("small", Controls(max_side=33), engine.one_hot(0))]:
        stylize_video(src, tmp_path / f"{name}.mp4", engine, w, controls=controls)
        outs[name] = read_back(tmp_path / f"{name}.mp4")[1]
    diff = [np.abs(a.astype(int) - b.astype(int)).mean() for a, b in
            zip(original, outs["photo"], strict=True)]
    assert max(diff) < 3  # strength 0 is the clip itself (up to the codec)
    assert np.abs(outs["candy"][0].astype(int) - original[0]).mean() > 10
    assert np.abs(outs["candy"][0].astype(int) - outs["mosaic"][0]).mean() > 5
    assert outs["small"][0].shape == (24, 32, 3)  # 33x24.75 -> even: 32x24
    assert output_size(1920, 1080, 1280) == (1280, 720)


def test_stabilize_carries_statistics_and_off_is_per_frame(tmp_path, engine, weights):
    src = make_clip(tmp_path / "in.mp4", 64, 48, 6, 10)
    _, frames, _ = read_back(src)
    stylize_video(src, tmp_path / "off.mp4", engine, weights, momentum=0.0)
    stylize_video(src, tmp_path / "on.mp4", engine, weights, momentum=0.9)
    off, on = read_back(tmp_path / "off.mp4")[1], read_back(tmp_path / "on.mp4")[1]
    per_frame = engine.stylize(frames[-1], weights).astype(int)
    d_off, d_on = (np.abs(x[-1].astype(int) - per_frame).mean() for x in (off, on))
    # Off: the frame on its own (up to the codec, whose error on the untrained model's
    # noise-like texture is a few levels); on: the carried statistics move it further.
    assert d_off < 10 and d_on > d_off + 1, (d_off, d_on)


def test_cancel_stops_within_a_frame_and_leaves_no_file(tmp_path, engine, weights):
    src = make_clip(tmp_path / "in.mp4", 32, 32, 30, 10)
    done: list[int] = []
    with pytest.raises(Cancelled):
        stylize_video(src, tmp_path / "out.mp4", engine, weights, progress=done.append,
                      cancelled=lambda: len(done) >= 3)
    assert done[-1] == 3
    assert not (tmp_path / "out.mp4").exists() and not (tmp_path / "out.mp4.part").exists()


@pytest.mark.parametrize("audio", ["libopus", "aac"])  # re-encoded, copied
def test_the_input_outlives_the_encoders_use_of_its_streams(tmp_path, engine, weights,
                                                            monkeypatch, audio):
    """The encoder thread reads the source's audio stream (its template, its decoder), which
    FFmpeg frees with the source container. A short clip decodes to the end before a slow
    encoder starts: the source must still be open then, and until the encoder ends (it was
    closed at once, and a server running many short clips crashed on freed memory)."""
    from stylebox.service import video

    seen: list[str] = []

    class Checked(video._Encoder):
        def __init__(self, path, size, rate, as_in, time_base):
            time.sleep(0.5)  # a slow start: the decoder reaches the end meanwhile
            self._src = as_in.container
            self._check("init")
            super().__init__(path, size, rate, as_in, time_base)

        def _check(self, where: str) -> None:
            self._src.duration  # noqa: B018 - PyAV raises "Container is not open" once closed
            seen.append(where)

        def audio(self, packet) -> None:
            self._check("audio")
            super().audio(packet)

        def close(self) -> None:
            self._check("close")
            super().close()

    monkeypatch.setattr(video, "_Encoder", Checked)
    src = make_clip(tmp_path / "in.mkv", 32, 32, 2, 25, codec="libvpx-vp9", audio=audio)
    stylize_video(src, tmp_path / "out.mp4", engine, weights)
    assert seen[0] == "init" and "audio" in seen and seen[-1] == "close"
    assert read_back(tmp_path / "out.mp4")[2]["audio"] == "aac"


def test_bounds_refused_by_the_probe(tmp_path):
    src = make_clip(tmp_path / "in.mp4", 64, 48, 20, 10)  # 2 s, 20 frames, 64x48
    probe(src, VideoLimits(max_duration_s=2.5, max_frames=20, max_pixels=64 * 48))
    for limits, word in [(VideoLimits(max_duration_s=1.5), "long"),
                         (VideoLimits(max_frames=19), "frames"),
                         (VideoLimits(max_pixels=64 * 48 - 1), "pixels")]:
        with pytest.raises(VideoTooLargeError, match=word) as e:
            probe(src, limits)
        assert e.value.status == 413
    probe(src, VideoLimits(max_pixels=32 * 24), max_side=32)  # max_side brings it inside


def test_frame_bound_checked_while_decoding(tmp_path, engine, weights):
    """A header can lie about the count: the decoder's count is held to the bound too."""
    src = make_clip(tmp_path / "in.mp4", 32, 32, 10, 10)
    info = probe(src)
    with pytest.raises(VideoTooLargeError):
        stylize_video(src, tmp_path / "out.mp4", engine, weights, info=info,
                      limits=VideoLimits(max_frames=5))
    assert not (tmp_path / "out.mp4").exists() and not (tmp_path / "out.mp4.part").exists()


def _audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as out:
        a = out.add_stream("aac", rate=44100)
        a.layout = "stereo"
        for i in range(20):
            frame = av.AudioFrame.from_ndarray(np.zeros((2, 1024), np.float32), format="fltp",
                                               layout="stereo")
            frame.sample_rate, frame.pts = 44100, i * 1024
            out.mux(a.encode(frame))
        out.mux(a.encode(None))
    return path


def test_bad_inputs(tmp_path):
    good = make_clip(tmp_path / "good.mp4", 32, 32, 10, 10).read_bytes()
    assert good.index(b"mdat") < good.index(b"moov")  # the index at the end, as cameras write
    cases = {"truncated.mp4": (good[: len(good) // 2], CorruptVideoError),
             "random.mp4": (np.random.default_rng(0).bytes(5000), UnsupportedVideoError),
             "image.png": (png(32, 32, seed=1), UnsupportedVideoError),
             "empty.mp4": (b"", UnsupportedVideoError)}
    for name, (data, error) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(error):
            probe(tmp_path / name)
    with pytest.raises(UnsupportedVideoError, match="no video stream"):
        probe(_audio_only(tmp_path / "audio.m4a"))
    still = tmp_path / "still.webp"
    Image.fromarray(synthetic_photo(20, 20, square=True)).save(still, "WEBP")
    with pytest.raises(UnsupportedVideoError, match="still"):
        probe(still)
    assert not is_video_file(still) and is_video_file(tmp_path / "good.mp4")


# -- the CLI ---------------------------------------------------------------------------------

def _default_sigint() -> None:
    # A test run started in the background (`nohup make test &`) inherits SIGINT ignored, and
    # Python keeps an ignored SIGINT ignored: give the command a terminal's Ctrl-C.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _stylize(args: list[str], tiny_onnx: Path, **kw) -> subprocess.Popen:
    env = service_env({"STYLEBOX_MODEL_PATH": str(tiny_onnx)})
    return subprocess.Popen([sys.executable, "-m", "stylebox", "stylize", *args], env=env,
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=_default_sigint, **kw)


def test_cli_stylizes_a_clip_with_a_progress_line(tmp_path, tiny_onnx):
    src = make_clip(tmp_path / "clip.mov", 48, 32, 10, 10, audio="aac")
    out = tmp_path / "out.mp4"
    p = _stylize([str(src), "-o", str(out), "-s", "candy", "--max-side", "40",
                  "--strength", "0.8"], tiny_onnx)
    stdout, stderr = p.communicate(timeout=120)
    assert p.returncode == 0, stderr
    assert "10/10 frames (100%)" in stderr and "FPS" in stderr
    assert f"-> {out} (40x26, 10 frames" in stdout
    times, frames, facts = read_back(out)  # playable: it decodes back, frame by frame
    assert len(frames) == 10 and frames[0].shape == (26, 40, 3) and facts["audio"] == "aac"
    bad = _stylize([str(src), "-o", str(tmp_path / "x.png"), "-s", "candy"], tiny_onnx)
    _, err = bad.communicate(timeout=60)
    assert bad.returncode == 2 and "*.mp4" in err


def test_cli_ctrl_c_leaves_no_half_written_output(tmp_path, tiny_onnx):
    src = make_clip(tmp_path / "long.mp4", 320, 240, 600, 30)
    out = tmp_path / "out.mp4"
    p = _stylize([str(src), "-o", str(out), "-s", "candy"], tiny_onnx)
    deadline = time.monotonic() + 60
    while not (tmp_path / "out.mp4.part").exists():  # it has started writing
        assert p.poll() is None and time.monotonic() < deadline, p.communicate()
        time.sleep(0.05)
    os.kill(p.pid, signal.SIGINT)
    _, stderr = p.communicate(timeout=60)
    assert p.returncode == 130, stderr
    assert "interrupted" in stderr
    assert not out.exists() and not (tmp_path / "out.mp4.part").exists()
