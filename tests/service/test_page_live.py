"""The page's Live camera and Video modes in a real headless Chromium, against real servers.

The camera is Chromium's fake capture device playing a y4m clip written here (a moving
picture, 320x240; `--use-file-for-fake-video-capture`), so the whole path runs: getUserMedia,
canvas -> JPEG, WS /live, stylized JPEG -> canvas. Skipped as tests/service/test_page.py is
(Chromium or Playwright missing, unless STYLEBOX_REQUIRE_BROWSER=1).
`test_screenshots_with_the_shipped_model` shows the shipped model on an eval photo (photo
mode) and on a camera panning across it (live mode); `STYLEBOX_SCREENSHOTS_TO=docs` writes
them to docs/screenshot-page.png and docs/screenshot-live.png, the README's pictures.
"""

from __future__ import annotations

import base64
import contextlib
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from stylebox.procs import free_port
from stylebox.service.routers import live
from stylebox.service.stability import StreamStylizer
from tests.conftest import ROOT, make_app, pixels
from tests.service.test_page import _serve, _wait, launch_chromium

SHIPPED = ROOT / "models/stylebox-a0.25.onnx"  # real styles: "stylized" is checkable


def moving_rgb(n: int, h: int, w: int) -> np.ndarray:
    """uint8 (n, h, w, 3): a colour gradient with a bright square crossing it."""
    y, x = np.mgrid[0:h, 0:w]
    frames = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        shift = 4 * i
        frames[i, ..., 0] = (x * 200 // w + shift) % 256
        frames[i, ..., 1] = y * 200 // h + 30
        frames[i, ..., 2] = 255 - (x + y) * 200 // (w + h)
        sx, sy = (10 + 6 * i) % (w - w // 4), (5 + 3 * i) % (h - h // 4)
        frames[i, sy:sy + h // 4, sx:sx + w // 4] = (250, 240, 40)
    return frames


def write_y4m(path: Path, frames: np.ndarray, fps: int = 15) -> Path:
    """A YUV4MPEG2 file (4:2:0, full-range BT.601, as C420jpeg says) of uint8 (N, H, W, 3)."""
    n, h, w, _ = frames.shape
    rgb = frames.astype(np.float32)
    yy = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
    cb = 128 - 0.168736 * rgb[..., 0] - 0.331264 * rgb[..., 1] + 0.5 * rgb[..., 2]
    cr = 128 + 0.5 * rgb[..., 0] - 0.418688 * rgb[..., 1] - 0.081312 * rgb[..., 2]

    def sub(c: np.ndarray) -> np.ndarray:  # 2x2 average: (N, H/2, W/2)
        return c.reshape(n, h // 2, 2, w // 2, 2).mean(axis=(2, 4))

    planes = [np.clip(np.rint(p), 0, 255).astype(np.uint8) for p in (yy, sub(cb), sub(cr))]
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for i in range(n):
            f.write(b"FRAME\n")
            for p in planes:
                f.write(p[i].tobytes())
    return path


@contextlib.contextmanager
def _camera_browser(clip: Path):
    """Chromium whose camera plays `clip`, permission granted without a prompt."""
    with launch_chromium("--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                         f"--use-file-for-fake-video-capture={clip}") as b:
        yield b


@contextlib.contextmanager
def _page(browser, base: str, errors_ok: tuple[str, ...] = (), styles: bool = True):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    context.grant_permissions(["camera"], origin=base)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(base + "/")
    if styles:  # not with an API key the page has not been given yet
        _wait(page, "document.querySelectorAll('#styles li').length > 0")
    try:
        yield page
    finally:
        context.close()
    assert not [e for e in errors if not any(ok in e for ok in errors_ok)], errors


_CANVAS_JS = "c => c.toDataURL('image/png')"
_CAMERA_JS = """v => {
    const c = document.createElement('canvas');
    c.width = v.videoWidth; c.height = v.videoHeight;
    c.getContext('2d').drawImage(v, 0, 0);
    return c.toDataURL('image/png');
}"""


def _png(page, selector: str, js: str) -> np.ndarray:
    url = page.locator(selector).evaluate(js)
    return pixels(base64.b64decode(url.split(",", 1)[1]))[..., :3].astype(np.int16)


def _frames(page) -> int:
    return int(page.locator("#live-out").get_attribute("data-frames") or 0)


@pytest.fixture(scope="module")
def camera_clip(tmp_path_factory) -> Path:
    return write_y4m(tmp_path_factory.mktemp("camera") / "clip.y4m", moving_rgb(30, 240, 320))


def test_live_camera_streams_stylized_frames(camera_clip, tmp_path):
    with _camera_browser(camera_clip) as browser, _serve(SHIPPED) as base, \
            _page(browser, base) as page:
        sent: list[str] = []
        page.on("websocket", lambda ws: ws.on(
            "framesent", lambda payload: sent.append(payload) if isinstance(payload, str)
            else None))
        page.get_by_label("Live camera").check()
        assert page.get_by_role("button", name="Start the camera").is_visible()
        assert page.locator("#result").is_hidden()  # the photo panels are away
        page.get_by_role("button", name="Mosaic").click()
        page.get_by_role("button", name="Start the camera").click()
        _wait(page, "Number(document.getElementById('live-out').dataset.frames || 0) >= 5",
              timeout_s=60)
        assert page.get_by_role("button", name="Stop the camera").is_visible()
        assert '"style": "mosaic"' in sent[0].replace('":"', '": "')

        # The stylized stream: the camera's size, a real picture, not the camera's picture.
        out = _png(page, "#live-out", _CANVAS_JS)
        cam = _png(page, "#live-cam", _CAMERA_JS)
        assert out.shape == cam.shape == (240, 320, 3)
        assert out.std() > 20  # not blank
        assert np.abs(out - cam).mean() > 20  # stylized, not the camera echoed
        assert page.locator("#live-shown-size").inner_text() == "320 \u00d7 240"
        _wait(page, "/^[0-9.]+$/.test(document.getElementById('live-fps').textContent)")
        fps = float(page.locator("#live-fps").inner_text())
        latency = page.locator("#live-latency").inner_text()
        assert fps > 0 and latency.endswith("in the server)"), (fps, latency)

        # Style, blend and strength change while running: sent as control messages and
        # acknowledged (the status line follows the acknowledgement).
        page.get_by_role("button", name="Candy").click()
        page.get_by_label("Udnie (Picabia, 1913) weight").fill("50")
        page.get_by_label("Strength").fill("70")
        _wait(page, "(t => t.startsWith('Live with Candy 67% + Udnie') && "
                    "t.endsWith('33%, strength 70%.'))"
                    "(document.getElementById('live-status').textContent)")
        controls = [m for m in sent if m.startswith("{")]
        assert '"candy:1,udnie:0.5"' in controls[-1] and '"strength":0.7' in controls[-1]
        done = _frames(page)
        _wait(page, "n => Number(document.getElementById('live-out').dataset.frames) > n + 3",
              arg=done, timeout_s=30)
        page.get_by_label("Side by side").count()  # the photo controls still exist
        page.screenshot(path=str(tmp_path / "screenshot-live.png"), full_page=True)

        page.get_by_role("button", name="Stop the camera").click()
        assert page.locator("#live-status").inner_text() == "Stopped."
        _wait(page, "!document.getElementById('live-cam').srcObject")


class _SlowStylizer(StreamStylizer):
    """A real stylizer on a host that manages about 4 frames a second."""

    def run(self, rgb, weights, p=None):
        time.sleep(0.25)
        return super().run(rgb, weights, p)


@contextlib.contextmanager
def _serve_in_thread(app):
    """uvicorn in a thread of this process, so the app can be changed by the test."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def test_live_steps_down_when_the_server_cannot_keep_up(tmp_path, tiny_onnx, engine,
                                                        monkeypatch):
    clip = write_y4m(tmp_path / "vga.y4m", moving_rgb(20, 480, 640))
    monkeypatch.setattr(live, "StreamStylizer", _SlowStylizer)
    with _camera_browser(clip) as browser, _serve_in_thread(make_app(engine, tiny_onnx)) as base, \
            _page(browser, base) as page:
        page.get_by_label("Live camera").check()
        page.get_by_role("button", name="Start the camera").click()
        _wait(page, "document.getElementById('live-shown-size').textContent === '640 \u00d7 480'",
              timeout_s=30)
        notice = page.locator("#live-notice")
        _wait(page, "!document.getElementById('live-notice').hidden", timeout_s=30)
        assert "could not keep up at 640 \u00d7 480" in notice.inner_text()
        assert "now 480 \u00d7 360" in notice.inner_text()
        _wait(page, "document.getElementById('live-shown-size').textContent === '480 \u00d7 360'",
              timeout_s=30)
        # And once more, to the smallest size; there it stays.
        _wait(page, "document.getElementById('live-shown-size').textContent === '320 \u00d7 240'",
              timeout_s=30)
        # A fixed working size turns the automatic steps off.
        page.get_by_label("Working size").select_option(label="640 \u00d7 480")
        _wait(page, "document.getElementById('live-shown-size').textContent === '640 \u00d7 480'",
              timeout_s=30)
        assert notice.is_hidden()
        page.get_by_role("button", name="Stop the camera").click()


def test_live_sends_the_api_key(camera_clip, tiny_onnx):
    """The key the page was given goes along as the `stylebox.key.` subprotocol."""
    with _camera_browser(camera_clip) as browser, _serve(tiny_onnx, api_key="cam-key~1") as base, \
            _page(browser, base, ("Failed to load resource",), styles=False) as page:
        page.get_by_label("API key").fill("cam-key~1")
        page.get_by_role("button", name="Use key").click()
        _wait(page, "document.querySelectorAll('#styles li').length === 3")
        page.get_by_label("Live camera").check()
        page.get_by_role("button", name="Start the camera").click()
        _wait(page, "Number(document.getElementById('live-out').dataset.frames || 0) >= 2",
              timeout_s=30)
        assert page.locator("#live-error").is_hidden()


def test_live_refused_says_why(camera_clip, tiny_onnx):
    with _camera_browser(camera_clip) as browser, _serve(tiny_onnx, max_live_sessions="0") \
            as base, _page(browser, base, ("WebSocket",)) as page:
        page.get_by_label("Live camera").check()
        page.get_by_role("button", name="Start the camera").click()
        _wait(page, "document.getElementById('live-error').textContent.includes('refused')")
        assert "live sessions" in page.get_by_role("alert").inner_text()
        assert page.get_by_role("button", name="Start the camera").is_enabled()
        _wait(page, "!document.getElementById('live-cam').srcObject")  # the camera is let go


def write_mp4(path: Path, frames: np.ndarray, fps: int = 12) -> Path:
    """An H.264 MP4 of uint8 (N, H, W, 3), with PyAV."""
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        for rgb in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def test_video_tab_uploads_follows_the_job_and_plays_the_result(tmp_path, tiny_onnx,
                                                                camera_clip):
    clip = write_mp4(tmp_path / "walk.mp4", moving_rgb(36, 96, 128))
    with _camera_browser(camera_clip) as browser, \
            _serve(tiny_onnx, video_dir=str(tmp_path / "jobs")) as base, \
            _page(browser, base) as page:
        page.get_by_label("Video").check()
        assert page.locator("#result").is_hidden() and page.locator("#video-result").is_visible()
        start = page.get_by_role("button", name="Stylize the clip")
        assert start.is_disabled()
        page.set_input_files("#video-file", str(clip))
        assert page.locator("#video-name").inner_text() == "walk.mp4"
        page.get_by_role("button", name="Mosaic").click()
        page.get_by_label("Clip size").select_option("")  # the clip's own size
        with page.expect_response(lambda r: "/videos?" in r.url) as posted:
            start.click()
        assert posted.value.status == 202
        assert "style=mosaic" in posted.value.url
        _wait(page, "document.getElementById('video-status').textContent.startsWith('Done')",
              timeout_s=120)
        assert page.locator("#video-upload-bar").evaluate("b => b.value") == 1
        assert page.locator("#video-job-bar").evaluate("b => b.value") == 1
        assert page.locator("#video-job-text").inner_text().startswith("36 / 36 frames")
        assert page.get_by_role("button", name="Cancel").is_hidden()
        # The result plays inline: Chromium decodes it, at the clip's size.
        player = page.locator("#video-out")
        _wait(page, "document.getElementById('video-out').readyState >= 2", timeout_s=30)
        assert player.evaluate("v => [v.videoWidth, v.videoHeight]") == [128, 96]
        player.evaluate("v => { v.muted = true; return v.play(); }")
        _wait(page, "document.getElementById('video-out').currentTime > 0.2", timeout_s=30)
        # ... and downloads as an MP4 (named by the server's Content-Disposition, which wins
        # over the link's own name; with an API key the page fetches it and names it itself).
        with page.expect_download() as dl:
            page.get_by_role("link", name="Download").click()
        assert dl.value.suggested_filename.endswith(".mp4")
        saved = tmp_path / "result.mp4"
        dl.value.save_as(saved)
        assert saved.read_bytes()[4:8] == b"ftyp"


def test_video_tab_cancel(tmp_path, tiny_onnx, camera_clip):
    """Cancel while the job runs: POST /videos/{id}/cancel, and the page says so. The next
    clip deletes the cancelled job, which nothing on the page shows any more (DELETE)."""
    clip = write_mp4(tmp_path / "long.mp4", moving_rgb(240, 240, 320), fps=24)
    jobs = tmp_path / "jobs"
    with _camera_browser(camera_clip) as browser, \
            _serve(tiny_onnx, video_dir=str(jobs)) as base, \
            _page(browser, base) as page:
        page.get_by_label("Video").check()
        page.set_input_files("#video-file", str(clip))
        page.get_by_role("button", name="Stylize the clip").click()
        _wait(page, "Number(document.getElementById('video-job-bar').value) > 0", timeout_s=60)
        text = page.locator("#video-job-text").inner_text()
        assert "/ 240 frames" in text, text
        with page.expect_response(lambda r: r.url.endswith("/cancel")) as cancelled:
            page.get_by_role("button", name="Cancel").click()
        assert cancelled.value.request.method == "POST" and cancelled.value.status == 200
        job = cancelled.value.json()
        assert job["state"] == "cancelled"
        assert page.locator("#video-status").inner_text() == "Cancelled."
        assert page.locator("#video-out").is_hidden()
        assert page.get_by_role("button", name="Stylize the clip").is_enabled()
        assert (jobs / job["id"]).is_dir()  # kept (cancelled) while the page may show it
        short = write_mp4(tmp_path / "short.mp4", moving_rgb(6, 48, 64))
        page.set_input_files("#video-file", str(short))
        with page.expect_response(lambda r: r.request.method == "DELETE") as deleted:
            page.get_by_role("button", name="Stylize the clip").click()
        assert deleted.value.status == 204
        assert deleted.value.url.endswith(f"/videos/{job['id']}")
        _wait(page, "document.getElementById('video-status').textContent.startsWith('Done')",
              timeout_s=120)
        assert not (jobs / job["id"]).exists()


EVAL_PHOTO = ROOT.parent / "shared/data/eval-photos/jcjohnson_chicago.jpg"


def panning_clip(photo: Path, n: int = 48, h: int = 240, w: int = 320) -> np.ndarray:
    """uint8 (n, h, w, 3): a camera panning across `photo` and back."""
    from PIL import Image

    with Image.open(photo) as im:
        im = im.convert("RGB")
        im = im.resize((w * 2, round(im.height * w * 2 / im.width)), Image.LANCZOS)
        rgb = np.asarray(im)
    top = (rgb.shape[0] - h) // 2
    xs = np.rint(w * (1 - np.cos(np.linspace(0, 2 * np.pi, n))) / 2).astype(int)
    return np.stack([rgb[top:top + h, x:x + w] for x in xs])


def _screenshot(page, path: Path) -> None:
    """The whole page as a 256-colour PNG (a third of the bytes; the README carries it)."""
    from PIL import Image

    page.screenshot(path=str(path), full_page=True)
    with Image.open(path) as im:
        small = im.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)


def test_screenshots_with_the_shipped_model(tmp_path):
    if not EVAL_PHOTO.is_file():
        pytest.skip(f"{EVAL_PHOTO} is not here (the eval photos live in ../shared/data)")
    clip = write_y4m(tmp_path / "pan.y4m", panning_clip(EVAL_PHOTO))
    out_dir = Path(os.environ.get("STYLEBOX_SCREENSHOTS_TO", tmp_path))
    with _camera_browser(clip) as browser, _serve(SHIPPED, max_upload_bytes="20000000") as base, \
            _page(browser, base) as page:
        _wait(page, "[...document.querySelectorAll('#styles img')]"
                    ".every(i => i.complete && i.naturalWidth === 128)")
        # Photo mode: a blend of two styles on an eval photo.
        page.get_by_role("button", name="The Starry Night (van Gogh, 1889)").click()
        with page.expect_response(lambda r: "/stylize?" in r.url) as first:
            page.set_input_files("#file", str(EVAL_PHOTO))
        assert first.value.status == 200
        with page.expect_response(lambda r: "/stylize?" in r.url) as blended:
            page.get_by_label("Candy weight").fill("40")
        assert blended.value.headers["x-stylebox-style"] == "candy:0.285714,starry_night:0.714286"
        _wait(page, "document.getElementById('status').textContent.includes('done')")
        _wait(page, "document.getElementById('after').complete")
        _screenshot(page, out_dir / "screenshot-page.png")

        # Live mode: the camera pans across the same street, stylized as it moves.
        page.get_by_label("Live camera").check()
        page.get_by_role("button", name="Mosaic").click()
        page.get_by_role("button", name="Start the camera").click()
        _wait(page, "Number(document.getElementById('live-out').dataset.frames || 0) >= 6",
              timeout_s=90)
        _wait(page, "/^[0-9.]+$/.test(document.getElementById('live-fps').textContent)")
        assert _png(page, "#live-out", _CANVAS_JS).std() > 20
        _screenshot(page, out_dir / "screenshot-live.png")
        page.get_by_role("button", name="Stop the camera").click()
