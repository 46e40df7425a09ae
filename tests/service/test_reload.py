"""`POST /admin/reload`: access rules, a bad file, and the atomic swap under load."""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from stylebox.service.backends.ort import OrtEngine
from stylebox.service.state import state_of
from tests.conftest import (
    TINY_STYLES,
    encode,
    make_app,
    make_client,
    make_tiny_card,
    make_tiny_generator,
    noise,
    pixels,
)

KEY = "s3cret-admin-key"
PNG = encode(noise(24, 20))


@pytest.fixture(scope="module")
def v2_onnx(tmp_path_factory) -> Path:
    """A second model: four styles, version v2."""
    from stylebox.model.export import export_onnx

    card = make_tiny_card([*TINY_STYLES, {"name": "wave", "title": "Wave"}])
    card.version = "v2"
    path = tmp_path_factory.mktemp("v2") / "v2.onnx"
    export_onnx(make_tiny_generator(n_styles=4, seed=1), card, path, export_size=32)
    return path


@pytest.fixture
def served(tmp_path, tiny_onnx) -> Path:
    path = tmp_path / "served.onnx"
    shutil.copy(tiny_onnx, path)
    return path


def _swap_file(src: Path, dst: Path) -> None:
    tmp = dst.with_name(dst.name + ".new")
    shutil.copy(src, tmp)
    os.replace(tmp, dst)  # how an operator should replace the file: atomically


def test_without_a_key_reload_is_refused_unless_enabled(served, v2_onnx):
    client = make_client(OrtEngine(served), served)
    _swap_file(v2_onnx, served)
    r = client.post("/admin/reload")
    assert r.status_code == 403 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"] == "urn:stylebox:problem:admin-disabled"
    assert "STYLEBOX_API_KEY" in r.json()["detail"]
    assert len(client.get("/styles").json()["styles"]) == 3  # nothing changed

    # A new client: its engine already loads v2 from the file.
    client = make_client(OrtEngine(served), served, allow_admin_without_key=True)
    r = client.post("/admin/reload")
    assert r.status_code == 200 and r.json()["model"]["version"] == "v2"


def test_with_a_key_reload_needs_it_and_swaps_the_model(served, v2_onnx):
    client = make_client(OrtEngine(served), served, api_key=KEY)
    _swap_file(v2_onnx, served)
    for headers in ({}, {"X-API-Key": "wrong"}, {"Authorization": "Bearer wrong"}):
        r = client.post("/admin/reload", headers=headers)
        assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
        assert r.headers["www-authenticate"].startswith("Bearer")
    auth = {"Authorization": f"Bearer {KEY}"}
    assert len(client.get("/styles", headers=auth).json()["styles"]) == 3
    r = client.post("/admin/reload", headers=auth)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "reloaded" and body["path"] == str(served)
    assert body["previous"] == {"name": "stylebox-tiny", "version": "test", "alpha": 0.25,
                                "styles": ["candy", "mosaic", "udnie"]}
    assert body["model"]["styles"] == ["candy", "mosaic", "udnie", "wave"]
    names = [s["name"] for s in client.get("/styles", headers=auth).json()["styles"]]
    assert names == ["candy", "mosaic", "udnie", "wave"]
    r = client.post("/stylize?style=wave", headers={"X-API-Key": KEY},
                    files={"image": ("a.png", PNG, "image/png")})
    assert r.status_code == 200 and r.headers["x-stylebox-model"] == "stylebox-tiny@v2"


def test_a_file_that_does_not_load_keeps_the_old_model(served):
    client = make_client(OrtEngine(served), served, allow_admin_without_key=True)
    served.write_bytes(b"not an onnx file")
    r = client.post("/admin/reload")
    assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"] == "urn:stylebox:problem:model-load-failed"
    assert "still serving stylebox-tiny@test" in r.json()["detail"]
    r = client.post("/stylize?style=candy", files={"image": ("a.png", PNG, "image/png")})
    assert r.status_code == 200 and r.headers["x-stylebox-model"] == "stylebox-tiny@test"
    served.unlink()
    r = client.post("/admin/reload")
    assert r.status_code == 422 and "does not exist" in r.json()["detail"]


def test_in_flight_requests_finish_on_the_old_model_new_ones_use_the_new(served, v2_onnx):
    import httpx

    old = OrtEngine(served)
    app = make_app(old, served, allow_admin_without_key=True)
    entered, release = threading.Event(), threading.Event()
    real = old.stylize

    def held(rgb, weights):  # the old engine's inference, held until the reload is done
        entered.set()
        assert release.wait(20)
        return real(rgb, weights)

    old.stylize = held  # this test's own engine object; the app sees an ordinary engine
    files = {"image": ("a.png", PNG, "image/png")}

    async def scenario() -> tuple[httpx.Response, httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            first = asyncio.create_task(c.post("/stylize?style=udnie", files=files))
            assert await asyncio.to_thread(entered.wait, 20)  # now in flight on the old one
            _swap_file(v2_onnx, served)
            reload = await c.post("/admin/reload")  # does not wait for the in-flight one
            second = await c.post("/stylize?style=wave", files=files)
            assert not first.done()  # still held: the swap did not wait for it
            release.set()
            return await first, reload, second

    first, reload, second = asyncio.run(scenario())
    assert reload.status_code == 200 and reload.json()["model"]["version"] == "v2"
    assert second.status_code == 200 and second.headers["x-stylebox-model"] == "stylebox-tiny@v2"
    assert first.status_code == 200 and first.headers["x-stylebox-model"] == "stylebox-tiny@test"
    # The in-flight answer really is the old model's output for udnie.
    want = real(pixels(PNG), np.array([0, 0, 1], np.float32))
    assert np.array_equal(pixels(first.content), want)
    assert state_of(app).engine is not old and state_of(app).engine.card.version == "v2"
