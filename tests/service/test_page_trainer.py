"""The page's "Add your painting" tab in a real headless Chromium, against a real uvicorn and a
real `stylebox worker` process training a tiny model (tests/trainer_fixtures.py: a random-weight
VGG, generated photos; no shared data, no fakes): choose a painting, name it, add it, watch the
job train, see the new style picked in the style picker, use it, remove it. And the tab says up
front when no worker runs. Photo mode's Best quality (POST /optimize): started, cancelled,
started again and followed to the PNG and its losses; off, with why, when no worker runs.
Skipped as tests/service/test_page.py is (Chromium or Playwright missing, unless
STYLEBOX_REQUIRE_BROWSER=1).
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import pytest

from stylebox.service.previews import sample_image
from tests.conftest import encode
from tests.service.test_page import _serve, _stylize, _wait, launch_chromium
from tests.trainer_fixtures import fresh_model

KEY = "paint-key"


@pytest.fixture(scope="module")
def browser():
    with launch_chromium() as b:
        yield b


@pytest.fixture(scope="module")
def editable(browser, tmp_path_factory) -> tuple[Path, Path]:
    """(model, data): the tiny editable model (after `browser`: nothing is built for a skipped
    test); tests copy it (`fresh`) before a worker edits it."""
    pytest.importorskip("torch")  # the worker and the model's checkpoint need it
    from tests.trainer_fixtures import make_editable_model

    return make_editable_model(tmp_path_factory.mktemp("editable"))


def fresh(editable, tmp_path: Path) -> Path:
    """A copy of the editable model and its checkpoint, for one test to change."""
    return fresh_model(editable[0], tmp_path)


@contextlib.contextmanager
def _page(browser, base: str):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(base + "/")
    try:
        yield page
    finally:
        context.close()
    # 4xx answers show up as console errors ("Failed to load resource"); scripts must not fail.
    assert not [e for e in errors if "Failed to load resource" not in e], errors


def _text(page, element_id: str) -> str:
    return page.locator(f"#{element_id}").inner_text()


def test_add_your_painting_trains_picks_uses_and_removes_the_style(browser, editable, tmp_path):
    from tests.trainer_fixtures import painting_png, run_worker

    model, data, jobs = fresh(editable, tmp_path), editable[1], tmp_path / "jobs"
    painting = painting_png(tmp_path / "Harbour at Dusk.png")
    tiny = tmp_path / "tiny.png"
    tiny.write_bytes(encode(sample_image(32)))  # under the 64 px a painting needs
    photo = tmp_path / "photo.png"
    photo.write_bytes(encode(sample_image(48)))
    # --max-jobs 2: the add, then the remove; the server swaps each new model in within 0.2 s.
    with run_worker(model, jobs, data, "--max-jobs", "2") as worker, \
            _serve(model, api_key=KEY, video_dir=str(jobs), model_watch_s="0.2",
                   video_heartbeat_s="0.5") as base, \
            _page(browser, base) as page:
        # The page works with the key its field is given (style edits always need one).
        page.get_by_label("API key").fill(KEY)
        page.get_by_role("button", name="Use key").click()
        _wait(page, "document.querySelectorAll('#styles li').length === 2")

        with page.expect_response(lambda r: r.url.endswith("/jobs")) as info:
            page.get_by_label("Add your painting").check()
        assert info.value.status == 200 and info.value.json()["workers"] == 1
        assert page.locator("#add-result").is_visible() and page.locator("#result").is_hidden()
        assert page.get_by_label("Strength").is_hidden()  # nothing to adjust here
        assert page.locator("#styles").is_visible()  # where the new style will appear
        add = page.get_by_role("button", name="Add the style")
        assert add.is_disabled()  # no painting yet
        _wait(page, "document.getElementById('add-notice').hidden")  # a worker runs

        # The painting: a thumbnail, and a name made from its file name.
        page.set_input_files("#painting-file", str(painting))
        _wait(page, "document.getElementById('painting-thumb').naturalWidth === 96")
        name = page.get_by_label("Name")
        assert name.input_value() == "harbour-at-dusk"
        assert add.is_enabled()

        # The name is checked as it is typed, with what to do about it.
        name.fill("Harbour Dusk")
        assert "\u201charbour-dusk\u201d" in _text(page, "style-name-problem")
        assert name.get_attribute("aria-invalid") == "true"
        name.fill("stripes")
        assert "already a style named" in _text(page, "style-name-problem")
        add.click()  # refused here, not sent
        assert page.locator("#add-progress").is_hidden()
        name.fill("harbour")
        assert page.locator("#style-name-problem").is_hidden()
        page.get_by_label("Title").fill("Harbour (my painting)")

        # A painting the server refuses: its problem's detail is shown.
        page.set_input_files("#painting-file", str(tiny))
        with page.expect_response(lambda r: r.url.endswith("/styles")) as refused:
            add.click()
        assert refused.value.status == 422
        _wait(page, "!document.getElementById('add-error').hidden")
        assert "at least 64 px" in _text(page, "add-error")
        assert name.input_value() == "harbour"  # the user's own name stays

        # The real one: 202, then the job's progress, its preview, and "ready".
        page.set_input_files("#painting-file", str(painting))
        with page.expect_response(lambda r: r.url.endswith("/styles")) as posted:
            add.click()
        assert posted.value.status == 202 and posted.value.request.method == "POST"
        job = posted.value.json()
        assert job["kind"] == "add-style" and job["style"] == "harbour"
        assert page.locator("#add-error").is_hidden()
        _wait(page, "/^step [0-9]+ of [0-9]+/"
                    ".test(document.getElementById('add-steps').textContent)", timeout_s=60)
        assert page.get_by_role("button", name="Cancel").is_visible()
        assert add.is_disabled()  # one edit at a time
        _wait(page, "document.getElementById('add-preview').naturalWidth > 0", timeout_s=60)
        assert page.locator("#add-preview").get_attribute("src").startswith("blob:")
        page.screenshot(path=str(tmp_path / "screenshot-training.png"), full_page=True)
        _wait(page, "document.getElementById('add-status').textContent"
                    ".startsWith('harbour is ready')", timeout_s=90)
        assert page.locator("#add-bar").evaluate("b => b.value") == 1
        assert re.match(r"step (\d+) of \1$", _text(page, "add-steps")), _text(page, "add-steps")
        assert re.match(r"style loss [0-9.e+-]+, content loss [0-9.e+-]+$",
                        _text(page, "add-losses")), _text(page, "add-losses")
        assert page.locator("#add-error").is_hidden()
        assert page.get_by_role("button", name="Cancel").is_hidden()

        # The picker shows the new style, picked alone, with its preview made by the new model.
        assert page.locator("#styles li").count() == 3
        picked = page.get_by_role("button", name="Harbour (my painting)", exact=True)
        assert picked.get_attribute("aria-pressed") == "true"
        assert page.locator("#styles .pick[aria-pressed=true]").count() == 1
        _wait(page, "document.querySelector('#styles li[data-name=harbour] img')"
                    ".naturalWidth === 128")
        assert "3 styles" in _text(page, "model-info")
        page.screenshot(path=str(tmp_path / "screenshot-ready.png"), full_page=True)
        # The form is ready for another painting; the new style can be removed from here.
        assert page.locator("#painting-thumb").is_hidden() and name.input_value() == ""
        remove = page.get_by_role("button", name="Remove the style Harbour (my painting)")
        assert remove.is_enabled()

        # It stylizes: a photo in Photo mode goes with ?style=harbour.
        page.get_by_label("Photo", exact=True).check()
        resp, shown = _stylize(page, lambda: page.set_input_files("#file", str(photo)))
        assert resp.headers["x-stylebox-style"] == "harbour"
        assert shown.shape == (48, 48, 3)

        # Remove it again (after the confirmation): the picker goes back to the two styles.
        page.get_by_label("Add your painting").check()
        page.once("dialog", lambda d: d.accept())
        with page.expect_response(lambda r: r.request.method == "DELETE"
                                  and r.url.endswith("/styles/harbour")) as deleted:
            remove.click()
        assert deleted.value.status == 202
        _wait(page, "document.getElementById('add-status').textContent"
                    " === 'harbour is removed.'", timeout_s=60)
        assert page.locator("#styles li").count() == 2
        assert page.locator("#added").is_hidden()
        assert page.get_by_role("button", name="Stripes").get_attribute("aria-pressed") \
            == "true"
        assert worker.poll() is None or worker.returncode == 0


def test_add_your_painting_says_when_no_worker_runs(browser, editable, tmp_path):
    from tests.trainer_fixtures import painting_png

    painting = painting_png(tmp_path / "sea.png")
    with _serve(editable[0], video_dir=str(tmp_path / "jobs"),
                allow_admin_without_key="true") as base, _page(browser, base) as page:
        _wait(page, "document.querySelectorAll('#styles li').length === 2")
        page.get_by_label("Add your painting").check()
        _wait(page, "!document.getElementById('add-notice').hidden")
        page.screenshot(path=str(tmp_path / "screenshot-no-worker.png"), full_page=True)
        notice = _text(page, "add-notice")
        assert "No trainer worker is running" in notice
        assert "stylebox worker" in notice  # GET /jobs's start_worker: how to start one
        page.set_input_files("#painting-file", str(painting))
        assert page.get_by_label("Name").input_value() == "sea"
        # Nothing is uploaded for no one: the button stays off while no worker runs.
        assert page.get_by_role("button", name="Add the style").is_disabled()
        assert page.locator("#add-progress").is_hidden()
        page.set_viewport_size({"width": 375, "height": 740})  # a phone: no sideways scroll
        assert page.evaluate("document.documentElement.scrollWidth") <= 375


def test_best_quality_renders_the_photo_with_progress_preview_cancel_and_losses(
        browser, editable, tmp_path):
    """Photo mode's Best quality: POST /optimize with the photo the user chose, the job
    followed (progress, the render so far, Cancel), then the PNG and its losses against the
    fast model's. A 64 px photo: the worker's default 300 iterations take ~7 s on the tiny
    model (one thread)."""
    from tests.trainer_fixtures import run_worker

    model, data, jobs = editable[0], editable[1], tmp_path / "jobs"  # not edited: no copy
    photo = tmp_path / "harbour.png"
    photo.write_bytes(encode(sample_image(64)))
    previews: list[int] = []
    with run_worker(model, jobs, data) as worker, \
            _serve(model, api_key=KEY, video_dir=str(jobs), video_heartbeat_s="0.5") as base, \
            _page(browser, base) as page:
        page.on("response", lambda r: previews.append(r.status)
                if r.url.endswith("/preview") and "/jobs/" in r.url else None)
        page.get_by_label("API key").fill(KEY)
        # Photo mode asks GET /jobs (on load: 401, no key yet; again with the key).
        with page.expect_response(lambda r: r.url.endswith("/jobs") and r.ok) as info:
            page.get_by_role("button", name="Use key").click()
        assert info.value.json()["workers"] == 1
        _wait(page, "document.querySelectorAll('#styles li').length === 2")
        start = page.get_by_role("button", name="Best quality (about 3 min)")
        assert start.is_hidden()  # nothing stylized yet
        _stylize(page, lambda: page.set_input_files("#file", str(photo)))
        assert start.is_enabled() and page.locator("#best-why").is_hidden()

        # A blend cannot be optimised: the button says why it is off.
        _stylize(page, lambda: page.get_by_label("Checker weight").fill("50"))
        assert start.is_disabled()
        assert "pick a single style" in _text(page, "best-why")
        _stylize(page, lambda: page.get_by_role("button", name="Checker").click())
        assert start.is_enabled() and page.locator("#best-why").is_hidden()

        # Started, then cancelled while it runs.
        with page.expect_response(lambda r: "/optimize?" in r.url) as posted:
            start.click()
        assert posted.value.status == 202, posted.value.text()
        assert "style=checker" in posted.value.url and "max_side=512" in posted.value.url
        cancel = page.get_by_role("button", name="Cancel the best-quality render")
        _wait(page, "!document.getElementById('best-cancel').hidden")
        assert start.is_disabled()  # one render at a time
        with page.expect_response(lambda r: r.url.endswith("/cancel")) as cancelled:
            cancel.click()
        assert cancelled.value.json()["state"] == "cancelled"
        _wait(page, "document.getElementById('best-status').textContent"
                    " === 'Best quality: cancelled.'")
        assert cancel.is_hidden() and start.is_enabled()

        # Again, to the end: progress with the job's message, the render so far, the PNG.
        with page.expect_response(lambda r: "/optimize?" in r.url) as posted:
            start.click()
        assert posted.value.status == 202, posted.value.text()
        _wait(page, "/^step [0-9]+ of 300/.test(document.getElementById('best-steps')"
                    ".textContent)", timeout_s=30)
        assert _text(page, "best-status").startswith("Best quality in Checker: ")
        _wait(page, "document.getElementById('best-image').dataset.shows", timeout_s=30)
        page.screenshot(path=str(tmp_path / "screenshot-best-running.png"), full_page=True)
        _wait(page, "document.getElementById('best-image').dataset.shows === 'result'"
                    " && document.getElementById('best-image').naturalWidth > 0", timeout_s=60)
        assert 200 in previews  # the render so far was shown while it ran
        assert page.locator("#best-image").get_attribute("src").startswith("blob:")
        assert page.locator("#best-image").evaluate("i => [i.naturalWidth, i.naturalHeight]") \
            == [64, 64]
        assert page.locator("#best-bar").evaluate("b => b.value") == 1
        assert _text(page, "best-steps") == "step 300 of 300"
        assert re.match(r"Best quality in Checker: done in \d+ s", _text(page, "best-status"))
        losses = _text(page, "best-losses")
        m = re.match(r"style loss ([0-9.e+-]+) \(fast model ([0-9.e+-]+)\), "
                     r"content loss [0-9.e+-]+ \(fast model [0-9.e+-]+\)$", losses)
        assert m and float(m[1]) < float(m[2]), losses
        download = page.get_by_role("link", name="Download the best-quality PNG")
        assert download.get_attribute("download") == "harbour-checker-best.png"
        assert cancel.is_hidden() and page.locator("#best-error").is_hidden()
        page.screenshot(path=str(tmp_path / "screenshot-best-done.png"), full_page=True)
        assert worker.poll() is None


def test_best_quality_is_off_when_no_worker_runs(browser, editable, tmp_path):
    photo = tmp_path / "photo.png"
    photo.write_bytes(encode(sample_image(64)))
    with _serve(editable[0], video_dir=str(tmp_path / "jobs")) as base, \
            _page(browser, base) as page:
        _wait(page, "document.querySelectorAll('#styles li').length === 2")
        _stylize(page, lambda: page.set_input_files("#file", str(photo)))
        start = page.get_by_role("button", name="Best quality (about 3 min)")
        assert start.is_visible() and start.is_disabled()
        assert "no trainer worker is running" in _text(page, "best-why")
        assert "best-why" in start.get_attribute("aria-describedby")
