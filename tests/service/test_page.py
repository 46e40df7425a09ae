"""The web page in a real browser: headless Chromium (Playwright) against a real uvicorn.

Skipped only when Chromium or Playwright is missing and STYLEBOX_REQUIRE_BROWSER is not 1
(.ci/run sets it, so CI fails instead of skipping). The screenshot is saved under the test's
tmp dir; STYLEBOX_SCREENSHOT_TO=path also writes it there (the tiny test model; the README's
screenshots come from tests/service/test_page_live.py, with the shipped model).
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from stylebox.procs import free_port, service_env, stop, wait_ready
from stylebox.service.previews import sample_image
from tests.conftest import ROOT, encode, noise, pixels

CHROMIUM = os.environ.get("STYLEBOX_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
MAX_UPLOAD = 400_000  # small, so the page's own "too large" check is reachable


def _need_browser(reason: str) -> None:
    if os.environ.get("STYLEBOX_REQUIRE_BROWSER") == "1":
        pytest.fail(f"browser test required (STYLEBOX_REQUIRE_BROWSER=1) but {reason}")
    pytest.skip(reason)


@contextlib.contextmanager
def _serve(model: Path, **settings: str):
    """A real uvicorn on 127.0.0.1 with the given STYLEBOX_* settings; yields its base URL."""
    port = free_port()
    env = service_env({"STYLEBOX_MODEL_PATH": str(model),
                       "STYLEBOX_MAX_UPLOAD_BYTES": str(MAX_UPLOAD),
                       **{f"STYLEBOX_{k.upper()}": v for k, v in settings.items()}})
    # The `uvicorn --factory` entry point (README), not `stylebox serve`: both must work.
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "stylebox.service.app:create_app",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{base}/readyz", [proc])
        yield base
    finally:
        stop(proc, timeout_s=10)


@pytest.fixture(scope="module")
def server(tiny_onnx, browser):  # after `browser`: no server is started for a skipped test
    with _serve(tiny_onnx) as base:
        yield base


@contextlib.contextmanager
def launch_chromium(*extra_args: str):
    """Debian's chromium through Playwright (skipped, or failed in CI, when either is
    missing), with CHROMIUM_ARGS and `extra_args`."""
    if not Path(CHROMIUM).is_file():
        _need_browser(f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _need_browser("the playwright package is not installed (the dev extra)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *extra_args])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def browser():
    with launch_chromium() as b:
        yield b


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(server + "/")
    yield page
    context.close()
    # 4xx answers show up as console errors ("Failed to load resource"); scripts must not fail.
    assert not [e for e in errors if "Failed to load resource" not in e], errors


_PIXELS_JS = """img => {
    const c = document.createElement('canvas');
    c.width = img.naturalWidth;
    c.height = img.naturalHeight;
    const ctx = c.getContext('2d');
    ctx.drawImage(img, 0, 0);
    return c.toDataURL('image/png');  // lossless, and far smaller than a pixel array
}"""


def _shown(page, selector: str = "#after") -> np.ndarray:
    """The pixels the page shows in an <img>, read back through a canvas: (H, W, 3)."""
    url = page.locator(selector).evaluate(_PIXELS_JS)
    return pixels(base64.b64decode(url.split(",", 1)[1]))[..., :3].astype(np.int16)


def _wait(page, js: str, arg=None, timeout_s: float = 20.0) -> None:
    """Poll a JS expression until it is truthy. Not wait_for_function: its polling evaluates
    the predicate with eval(), which the page's CSP (rightly) forbids."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(js, arg):
        assert time.monotonic() < deadline, f"timed out waiting for: {js}"
        time.sleep(0.05)


def _stylize(page, action):
    """Do `action`, wait for the /stylize answer and for the page to show it."""
    with page.expect_response(lambda r: "/stylize?" in r.url) as info:
        action()
    resp = info.value
    assert resp.status == 200, resp.status
    spec = resp.headers["x-stylebox-style"]
    _wait(page, "s => document.getElementById('after').dataset.spec === s "
                "&& document.getElementById('after').complete", arg=spec)
    return resp, _shown(page)


def test_page_upload_pick_blend_strength_download(page, tmp_path):
    photo_rgb = sample_image(360)[:, 30:330]  # (360, 300, 3): not square
    photo = tmp_path / "holiday.png"
    photo.write_bytes(encode(photo_rgb))

    # Every style of the card gets a card with a preview the model made.
    _wait(page, "document.querySelectorAll('#styles li').length === 3")
    _wait(page, "[...document.querySelectorAll('#styles img')]"
                ".every(i => i.complete && i.naturalWidth === 128)")
    assert page.get_by_role("button", name="Candy").get_attribute("aria-pressed") == "true"

    # Upload through the file input: the first style is applied straight away.
    resp, candy = _stylize(page, lambda: page.set_input_files("#file", str(photo)))
    assert resp.headers["x-stylebox-style"] == "candy"
    assert candy.shape == photo_rgb.shape and np.abs(candy - photo_rgb).mean() > 10
    assert page.locator("#before").evaluate("i => i.naturalWidth") == 300

    # Pick another style: the result image changes.
    resp, mosaic = _stylize(page, lambda: page.get_by_role("button", name="Mosaic").click())
    assert resp.headers["x-stylebox-style"] == "mosaic"
    assert np.abs(mosaic - candy).mean() > 5
    after_src = page.locator("#after").get_attribute("src")
    assert after_src.startswith("blob:")

    # Blend: raise Udnie's weight to 100 too -> an even mix, different from both.
    resp, blend = _stylize(page, lambda: page.get_by_label("Udnie weight").fill("100"))
    assert resp.headers["x-stylebox-style"] == "mosaic:0.5,udnie:0.5"
    assert np.abs(blend - mosaic).mean() > 2
    assert page.locator("#after").get_attribute("src") != after_src
    resp, _ = _stylize(page, lambda: page.get_by_label("Udnie weight").fill("50"))
    assert resp.headers["x-stylebox-style"] == "mosaic:0.666667,udnie:0.333333"

    # Strength 0 gives the photo back exactly; 50 % lies between photo and style.
    resp, zero = _stylize(page, lambda: page.get_by_label("Strength").fill("0"))
    assert "strength=0&" in resp.url
    np.testing.assert_array_equal(zero, photo_rgb)
    resp, half = _stylize(page, lambda: page.get_by_label("Strength").fill("50"))
    assert "strength=0.5&" in resp.url
    assert 0 < np.abs(half - photo_rgb).mean() < np.abs(blend - photo_rgb).mean()
    assert page.locator("#strength-value").inner_text() == "50%"

    # Keep the photo's colours: the request says so and the pixels change.
    resp, kept = _stylize(page, lambda: page.get_by_label("Keep the photo's colours").check())
    assert "preserve_color=true" in resp.url and np.abs(kept - half).mean() > 0.5

    assert page.locator("#status").inner_text().startswith(
        "Mosaic 67% + Udnie 33%, strength 50%, photo colours")
    shot = tmp_path / "screenshot-page.png"
    page.screenshot(path=str(shot), full_page=True)
    if target := os.environ.get("STYLEBOX_SCREENSHOT_TO"):
        shutil.copyfile(shot, target)

    # The before/after divider is a keyboard-usable range input.
    page.locator("#split").focus()
    page.keyboard.press("ArrowLeft")
    assert page.locator("#compare").evaluate(
        "e => e.style.getPropertyValue('--pos')") == "49%"
    page.get_by_label("Side by side").check()
    assert page.locator("#compare").get_attribute("data-view") == "side"

    # Download: the file is the result the page shows, named after photo and style.
    with page.expect_download() as dl:
        page.get_by_role("link", name="Download").click()
    assert dl.value.suggested_filename == "holiday-mosaic_0_666667_udnie_0_333333.png"
    saved = tmp_path / "download.png"
    dl.value.save_as(saved)
    np.testing.assert_array_equal(pixels(saved.read_bytes())[..., :3], kept)


def test_page_reports_bad_files(page, tmp_path):
    _wait(page, "document.querySelectorAll('#styles li').length === 3")
    text = tmp_path / "notes.txt"
    text.write_text("this is not an image\n" * 20)
    with page.expect_response(lambda r: "/stylize?" in r.url) as info:
        page.set_input_files("#file", str(text))
    assert info.value.status == 415
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert "not an image" in alert.inner_text()
    assert page.locator("#download").is_hidden()

    big = tmp_path / "big.png"  # noise does not compress: well over MAX_UPLOAD
    big.write_bytes(encode(noise(400, 400)))
    page.set_input_files("#file", str(big))
    _wait(page, "document.getElementById('error').textContent.includes('too large')")
    assert "big.png" in alert.inner_text()

    # Drag and drop a good photo onto the drop zone: the error goes, a result comes.
    png = list(encode(sample_image(64)))
    resp, shown = _stylize(page, lambda: page.locator("#drop").evaluate("""(zone, bytes) => {
        const dt = new DataTransfer();
        dt.items.add(new File([new Uint8Array(bytes)], 'dropped.png', {type: 'image/png'}));
        zone.dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true}));
    }""", png))
    assert shown.shape == (64, 64, 3) and alert.is_hidden()
    assert page.locator("#file-name").inner_text() == "dropped.png"


def test_page_fits_a_phone_screen(browser, server, tmp_path):
    context = browser.new_context(viewport={"width": 375, "height": 740}, is_mobile=True)
    page = context.new_page()
    page.goto(server + "/")
    _wait(page, "document.querySelectorAll('#styles li').length === 3")
    # No sideways scrolling, and every control keeps an accessible name.
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    for label in ("Choose a photo", "Strength", "Keep the photo's colours", "Size", "Format",
                  "Candy weight"):
        assert page.get_by_label(label, exact=True).count() == 1, label
    page.screenshot(path=str(tmp_path / "screenshot-phone.png"), full_page=True)
    context.close()


def test_page_asks_for_the_api_key_when_the_server_needs_one(browser, tiny_onnx, tmp_path):
    photo = tmp_path / "photo.png"
    photo.write_bytes(encode(sample_image(48)))
    with _serve(tiny_onnx, api_key="s3cret-key") as base:
        context = browser.new_context()
        page = context.new_page()
        page.goto(base + "/")
        key = page.get_by_label("API key")
        key.wait_for()
        assert "needs an API key" in page.get_by_role("alert").inner_text()
        key.fill("wrong")
        page.get_by_role("button", name="Use key").click()
        _wait(page, "document.getElementById('error').textContent.includes('not valid')")
        key.fill("s3cret-key")
        page.get_by_role("button", name="Use key").click()
        _wait(page, "[...document.querySelectorAll('#styles img')]"
                    ".filter(i => i.complete && i.naturalWidth === 128).length === 3")
        assert page.get_by_label("API key").is_hidden()
        _, shown = _stylize(page, lambda: page.set_input_files("#file", str(photo)))
        assert shown.shape == (48, 48, 3)
        context.close()


def test_page_sends_a_key_a_header_cannot_hold_as_text(browser, tiny_onnx, tmp_path):
    """A key past Latin-1 (fetch() throws on it as a header) or with Latin-1 letters (sent as
    one byte each, it matches nothing) goes as its UTF-8 bytes, which the server compares;
    one no header can carry (a NUL) is refused in the key field with a message."""
    key = "k€y-café-ключ"
    photo = tmp_path / "photo.png"
    photo.write_bytes(encode(sample_image(48)))
    with _serve(tiny_onnx, api_key=key) as base:
        context = browser.new_context()
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(base + "/")
        field = page.get_by_label("API key")
        field.wait_for()
        field.fill("bad\x00key")
        page.get_by_role("button", name="Use key").click()
        _wait(page, "document.getElementById('error').textContent.includes('NUL')")
        assert field.is_visible()
        field.fill(key)
        page.get_by_role("button", name="Use key").click()
        _wait(page, "[...document.querySelectorAll('#styles img')]"
                    ".filter(i => i.complete && i.naturalWidth === 128).length === 3")
        assert field.is_hidden()
        _, shown = _stylize(page, lambda: page.set_input_files("#file", str(photo)))
        assert shown.shape == (48, 48, 3)
        assert not errors, errors
        context.close()


def test_page_model_select_with_several_models(browser, page, tiny_onnx, fast_onnx, tmp_path):
    """One model (the module's server): no select. Two: a Model select (name and ms at
    640 x 480) whose choice the styles, the photo's request and the live mode follow."""
    _wait(page, "document.querySelectorAll('#styles li').length === 3")
    assert page.locator("#model-pick").is_hidden()
    photo = tmp_path / "p.png"
    photo.write_bytes(encode(sample_image(96)))
    with _serve(tiny_onnx, extra_models=f"fast={fast_onnx}", engine="onnxruntime") as base:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        two = context.new_page()
        two.goto(base + "/")
        _wait(two, "!document.getElementById('model-pick').hidden")
        options = two.locator("#model option").all_inner_texts()
        assert [o.split(" ")[0] for o in options] == ["default", "fast"]
        assert all(o.endswith(" ms") for o in options), options
        assert two.locator("#model").input_value() == "default"
        _wait(two, "document.querySelectorAll('#styles li').length === 3")
        resp, _ = _stylize(two, lambda: two.set_input_files("#file", str(photo)))
        assert "model=default" in resp.url and resp.headers["x-stylebox-model-name"] == "default"
        # fast: its own two styles; the mix keeps candy (both have it); the photo again
        resp, _ = _stylize(two, lambda: two.get_by_label("Model").select_option("fast"))
        assert "model=fast" in resp.url and resp.headers["x-stylebox-model-name"] == "fast"
        assert resp.headers["x-stylebox-style"] == "candy"
        assert two.locator("#styles li").count() == 2
        assert "fast" in two.locator("#model-info").inner_text()
        # The live mode starts on the server's live model (GET /models says which).
        live = two.evaluate("fetch('/models').then(r => r.json()).then(b => b.live)")
        two.get_by_label("Live camera").check()
        _wait(two, "m => document.getElementById('model').value === m", arg=live)
        assert two.locator("#model-pick").is_visible()
        two.get_by_label("Add your painting").check()  # the trainer edits the default model
        _wait(two, "document.getElementById('model').value === 'default'")
        assert two.locator("#model-pick").is_hidden()
        context.close()
