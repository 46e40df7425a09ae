"""WS /live (service/routers/live.py): frames in, stylized frames out, over Starlette's
TestClient; and one real uvicorn for the shutdown.

Stylized frames come back as JPEG of the frame's size, control messages change style and
strength while running, a frame that arrives while one is being stylized is dropped (counted,
never queued: proven with a stylizer slowed on purpose), the API key and the session cap are
checked before the handshake is accepted, and bad frames or control messages get an error
message while the session goes on.
"""

from __future__ import annotations

import io
import json
import re
import time

import numpy as np
import pytest
from PIL import Image
from starlette.testclient import WebSocketDenialResponse
from starlette.websockets import WebSocketDisconnect

from stylebox.service.http.auth import key_protocol
from stylebox.service.routers import live
from stylebox.service.stability import StreamStylizer
from stylebox.service.state import state_of
from tests.conftest import encode, make_client, noise, pixels

PROTOCOLS = ["stylebox.v1"]


def jpeg(h: int = 48, w: int = 64, seed: int = 0, quality: int = 95) -> bytes:
    """A smooth picture (noise would not survive JPEG), different per seed: (h, w) JPEG."""
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.stack([(x * 255 // max(w - 1, 1) + 40 * seed) % 256,
                    (y * 255 // max(h - 1, 1)) % 256,
                    np.full_like(x, (90 * seed) % 256)], -1).astype(np.uint8)
    return encode(rgb, "JPEG", quality=quality)


@pytest.fixture(scope="module")
def client(tiny_onnx, engine):
    with make_client(engine, tiny_onnx, max_live_sessions=2, live_max_frame_bytes=60_000,
                     live_max_frame_pixels=320 * 240) as c:
        yield c


def open_session(client, **kw):
    return client.websocket_connect("/live", subprotocols=kw.pop("subprotocols", PROTOCOLS),
                                    **kw)


def refusal(client, url: str = "/live", **kw) -> WebSocketDenialResponse:
    """The HTTP answer that refused a handshake."""
    with (pytest.raises(WebSocketDenialResponse) as refused,
          client.websocket_connect(url, subprotocols=kw.pop("subprotocols", PROTOCOLS), **kw)):
        pass
    return refused.value


def control(ws, **fields) -> dict:
    ws.send_text(json.dumps(fields))
    return ws.receive_json()


def frame(ws, data: bytes) -> tuple[dict, np.ndarray]:
    """Send one frame; its stats and its pixels (H, W, 3) int16."""
    ws.send_bytes(data)
    stats = ws.receive_json()
    assert stats["type"] == "frame", stats
    out = ws.receive_bytes()
    assert out[:3] == b"\xff\xd8\xff"  # a JPEG
    return stats, pixels(out).astype(np.int16)


def error(ws, data: bytes | str) -> dict:
    if isinstance(data, bytes):
        ws.send_bytes(data)
    else:
        ws.send_text(data)
    message = ws.receive_json()
    assert message["type"] == "error", message
    return message


def test_frames_come_back_stylized_at_their_size(client):
    with open_session(client) as ws:
        assert ws.accepted_subprotocol == "stylebox.v1"
        hello = ws.receive_json()
        assert hello["type"] == "hello" and hello["styles"] == ["candy", "mosaic", "udnie"]
        assert hello["limits"] == {"max_frame_bytes": 60_000, "max_frame_pixels": 320 * 240,
                                   "idle_timeout_s": 30.0}
        assert control(ws, style="candy") == {"type": "control", "style": "candy",
                                              "strength": 1.0, "preserve_color": False,
                                              "quality": 80}
        for h, w in ((240, 320), (50, 75), (9, 13)):
            data = jpeg(h, w)
            stats, out = frame(ws, data)
            assert out.shape == (h, w, 3)
            assert (stats["width"], stats["height"]) == (w, h)
            assert np.abs(out - pixels(data)).mean() > 10  # stylized, not echoed
            assert stats["style"] == "candy" and stats["server_ms"] >= stats["inference_ms"] > 0
        assert stats["seq"] == stats["received"] == stats["stylized"] == 3
        assert stats["dropped"] == 0
        # PNG frames are taken too (a client that prefers lossless).
        stats, out = frame(ws, encode(noise(20, 30)))
        assert out.shape == (20, 30, 3)


def test_style_blend_strength_and_colour_change_while_running(client):
    data = jpeg(64, 96, seed=1)
    photo = pixels(data).astype(np.int16)
    with open_session(client) as ws:
        ws.receive_json()
        control(ws, style="candy")
        _, candy = frame(ws, data)
        assert control(ws, style="mosaic")["style"] == "mosaic"
        _, mosaic = frame(ws, data)
        assert np.abs(mosaic - candy).mean() > 5
        ack = control(ws, style="candy:0.7,mosaic:0.3")
        assert ack["style"] == "candy:0.7,mosaic:0.3"
        stats, blend = frame(ws, data)
        assert stats["style"] == "candy:0.7,mosaic:0.3"
        assert 0 < np.abs(blend - candy).mean() < np.abs(mosaic - candy).mean()
        # A partial update keeps the other settings: the style stays the blend.
        ack = control(ws, strength=0)
        assert ack["style"] == "candy:0.7,mosaic:0.3" and ack["strength"] == 0
        _, zero = frame(ws, data)
        assert np.abs(zero - photo).mean() < 3  # the photo back (JPEG round trips only)
        control(ws, strength=0.5)
        _, half = frame(ws, data)
        assert np.abs(zero - photo).mean() < np.abs(half - photo).mean() \
            < np.abs(blend - photo).mean()
        control(ws, strength=1, preserve_color=True, quality=40)
        _, kept = frame(ws, data)
        assert np.abs(kept - blend).mean() > 2


class SlowStylizer(StreamStylizer):
    """A real StreamStylizer whose frames take at least `delay` seconds."""

    delay = 0.0
    calls = 0

    def run(self, rgb, weights, p=None):
        type(self).calls += 1
        time.sleep(self.delay)
        return super().run(rgb, weights, p)


def test_frames_arriving_while_one_is_stylized_are_dropped_not_queued(client, monkeypatch):
    monkeypatch.setattr(live, "StreamStylizer", SlowStylizer)
    monkeypatch.setattr(SlowStylizer, "delay", 0.5)
    monkeypatch.setattr(SlowStylizer, "calls", 0)
    with open_session(client) as ws:
        ws.receive_json()
        control(ws, style="udnie")
        for seed in range(10):  # a burst: all arrive while the first is being stylized
            ws.send_bytes(jpeg(seed=seed))
        # Messages are read in order: once this is acknowledged, all 10 frames were read.
        ack = control(ws, strength=1)
        first = ws.receive_json()  # the first frame's reply, and no other
        ws.receive_bytes()
        assert ack["type"] == "control"
        assert (first["seq"], first["received"], first["stylized"], first["dropped"]) == \
            (1, 10, 1, 9)
        # Nothing was queued: the next frame's reply is the next one, for frame 11.
        stats, _ = frame(ws, jpeg(seed=11))
        assert (stats["seq"], stats["stylized"], stats["dropped"]) == (11, 2, 9)
    assert SlowStylizer.calls == 2


def test_bad_frames_get_an_error_and_the_session_goes_on(client):
    with open_session(client) as ws:
        ws.receive_json()
        e = error(ws, jpeg())
        assert e["problem"]["status"] == 422 and "style" in e["problem"]["detail"]
        assert e["seq"] == 1
        control(ws, style="candy")
        cases = [
            (b"GIF89a" + bytes(100), 415, "unsupported-media-type"),  # a real format, not ours
            (b"plain text, not a picture", 415, "unsupported-media-type"),
            (b"\xff\xd8\xff" + bytes(500), 422, "corrupt-image"),  # JPEG magic, then junk
            (jpeg(241, 320), 413, "image-too-large"),  # over live_max_frame_pixels
            (encode(noise(150, 150)), 413, "payload-too-large"),  # over live_max_frame_bytes
            (b"", 415, "unsupported-media-type"),
        ]
        for seq, (data, status, slug) in enumerate(cases, start=2):
            e = error(ws, data)
            assert (e["problem"]["status"], e["seq"]) == (status, seq), e
            assert e["problem"]["type"] == f"urn:stylebox:problem:{slug}"
        stats, out = frame(ws, jpeg(24, 32))
        assert out.shape == (24, 32, 3) and stats["stylized"] == 1


@pytest.mark.parametrize("text,field", [
    ("{not json", None), ("[1, 2]", None), ('"candy"', None),
    ('{"style": 3}', "style"), ('{"style": ""}', None), ('{"style": "candy:-1"}', None),
    ('{"strength": 1.5}', "strength"), ('{"strength": true}', "strength"),
    ('{"strength": "0.5"}', "strength"), ('{"preserve_color": "yes"}', "preserve_color"),
    ('{"quality": 0}', "quality"), ('{"quality": 50.5}', "quality"),
    ('{"style": "mosaic", "strength": -0.1}', "strength"),
    ("{" + '"a": 1,' * 3000 + '"b": 2}', None),  # over the control message cap
])
def test_malformed_control_messages_change_nothing(client, text, field):
    with open_session(client) as ws:
        ws.receive_json()
        before = control(ws, style="candy", strength=0.5)
        e = error(ws, text)
        assert e["problem"]["status"] == 422 and "seq" not in e
        if field:
            assert e["problem"]["field"] == field
        # Nothing changed (the mosaic in the last case was not applied either).
        assert control(ws) == before
        stats, _ = frame(ws, jpeg())
        assert stats["style"] == "candy"


def test_an_unknown_style_is_named(client):
    with open_session(client) as ws:
        ws.receive_json()
        e = error(ws, json.dumps({"style": "candy:0.5,vangogh:0.5"}))
        assert e["problem"]["status"] == 404
        assert e["problem"]["valid_styles"] == ["candy", "mosaic", "udnie"]


def test_the_api_key_is_checked_before_the_handshake(tiny_onnx, engine):
    key = "live-k€y with spaces"
    with make_client(engine, tiny_onnx, api_key=key) as c:
        for protocols, headers, why in (
                (PROTOCOLS, {}, "needs an API key"),
                ([*PROTOCOLS, key_protocol("wrong")], {}, "not valid"),
                ([*PROTOCOLS, "stylebox.key.%%%"], {}, "not valid"),
                (PROTOCOLS, {"X-API-Key": "wrong"}, "not valid")):
            refused = refusal(c, subprotocols=protocols, headers=headers)
            assert refused.status_code == 401
            assert refused.headers["content-type"] == "application/problem+json"
            assert why in refused.json()["detail"]
            assert refused.headers["www-authenticate"].startswith('Bearer realm=')
        # A query parameter is not a way in (it would land in access and proxy logs).
        assert refusal(c, f"/live?api_key={key}").status_code == 401
        # The key as a subprotocol (browsers) or a header (other clients): accepted, and the
        # server answers with its protocol, never with the one that carries the key.
        with c.websocket_connect("/live", subprotocols=[*PROTOCOLS, key_protocol(key)]) as ws:
            assert ws.accepted_subprotocol == "stylebox.v1"
            assert ws.receive_json()["type"] == "hello"
        # base64url without padding: an HTTP token whatever the key holds
        assert re.fullmatch(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+", key_protocol(key))
        with c.websocket_connect("/live",
                                 headers={"Authorization": f"Bearer {key}".encode()}) as ws:
            assert ws.accepted_subprotocol is None  # no protocol offered, none chosen
            assert ws.receive_json()["type"] == "hello"


def test_sessions_over_the_cap_are_refused_with_503(tiny_onnx, engine):
    with make_client(engine, tiny_onnx, max_live_sessions=1, retry_after_s=7) as c:
        with open_session(c) as first:
            first.receive_json()
            refused = refusal(c)
            assert refused.status_code == 503
            assert refused.headers["retry-after"] == "7"
            body = refused.json()
            assert body["type"] == "urn:stylebox:problem:overloaded"
            assert body["max_live_sessions"] == 1
            # The HTTP API is not affected: live sessions do not hold request slots.
            assert c.post("/stylize?style=candy", content=jpeg(),
                          headers={"Content-Type": "image/jpeg"}).status_code == 200
            metrics = c.get("/metrics").text
            assert "stylebox_live_sessions 1.0" in metrics
            assert 'stylebox_rejections_total{reason="overloaded"} 1.0' in metrics
        with open_session(c) as again:  # the slot is free once the first one closed
            again.receive_json()
        assert state_of(c.app).admission.live == 0
    with make_client(engine, tiny_onnx, max_live_sessions=0) as c:
        refused = refusal(c)
        assert refused.status_code == 503 and "turned off" in refused.json()["detail"]


def test_not_ready_and_draining_refuse_with_503(tiny_onnx, engine):
    with make_client(engine, tiny_onnx) as c:
        state_of(c.app).draining = True
        refused = refusal(c)
        assert refused.status_code == 503 and "shutting down" in refused.json()["detail"]
        assert state_of(c.app).admission.live == 0


def test_an_idle_session_is_closed(tiny_onnx, engine):
    with make_client(engine, tiny_onnx, live_idle_timeout_s=0.3) as c, open_session(c) as ws:
        ws.receive_json()
        control(ws, style="candy")  # activity resets the clock
        time.sleep(0.15)
        frame(ws, jpeg())
        t0 = time.monotonic()
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
        assert closed.value.code == live.IDLE_CLOSE
        assert time.monotonic() - t0 < 5


def test_frames_are_counted_in_the_metrics(tiny_onnx, engine):
    with make_client(engine, tiny_onnx) as c:
        with open_session(c) as ws:
            ws.receive_json()
            control(ws, style="candy")
            frame(ws, jpeg())
            error(ws, b"nope")
        text = c.get("/metrics").text
        assert 'stylebox_live_frames_total{outcome="stylized"} 1.0' in text
        assert 'stylebox_live_frames_total{outcome="error"} 1.0' in text


def test_a_session_leaving_mid_frame_ends_cleanly(tiny_onnx, engine, monkeypatch, caplog):
    """The client goes while its frame is in the network: the session ends, the slot is
    free, nothing is logged as an error."""
    monkeypatch.setattr(live, "StreamStylizer", SlowStylizer)
    monkeypatch.setattr(SlowStylizer, "delay", 0.3)
    with make_client(engine, tiny_onnx, max_live_sessions=1) as c:
        with open_session(c) as ws:
            ws.receive_json()
            control(ws, style="candy")
            ws.send_bytes(jpeg())
        deadline = time.monotonic() + 5
        while state_of(c.app).admission.live and time.monotonic() < deadline:
            time.sleep(0.05)
        assert state_of(c.app).admission.live == 0
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


def test_server_shutdown_closes_live_sessions(tiny_onnx):
    """SIGTERM on a real server: the session is told the server is going (1012, from
    uvicorn) and the server exits promptly rather than waiting out the timeout."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    from stylebox.procs import ServeProcess

    server = ServeProcess(tiny_onnx, {"STYLEBOX_DRAIN_S": "0.5"})
    try:
        server.wait_ready()
        url = server.base.replace("http", "ws") + "/live"
        with connect(url, subprotocols=["stylebox.v1"]) as ws:
            assert json.loads(ws.recv(timeout=10))["type"] == "hello"
            ws.send(json.dumps({"style": "candy"}))
            ws.recv(timeout=10)
            ws.send(jpeg())
            assert json.loads(ws.recv(timeout=10))["type"] == "frame"
            assert Image.open(io.BytesIO(ws.recv(timeout=10))).size == (64, 48)
            t0 = time.monotonic()
            server.proc.terminate()
            with pytest.raises(ConnectionClosed) as closed:
                while True:  # frames keep being answered while the server drains
                    ws.send(jpeg())
                    ws.recv(timeout=10)
                    ws.recv(timeout=10)
            assert closed.value.rcvd is None or closed.value.rcvd.code in (1001, 1012)
        assert server.proc.wait(timeout=20) == 0
        assert time.monotonic() - t0 < 15
    finally:
        server.stop()


def test_a_session_follows_a_model_reload(tiny_onnx, engine, monkeypatch):
    """After POST /admin/reload swaps the app's engine, the next frame runs on the new one."""
    from stylebox.service.backends.ort import OrtEngine

    with make_client(engine, tiny_onnx, allow_admin_without_key=True,
                     engine="onnxruntime") as c, \
            open_session(c) as ws:
        ws.receive_json()
        control(ws, style="mosaic")
        _, before = frame(ws, jpeg())
        assert c.post("/admin/reload").status_code == 200
        assert state_of(c.app).engine is not engine
        calls = []
        new = state_of(c.app).engine
        original = type(new).stylize_stats

        def counted(self, *a, **kw):
            calls.append(self)
            return original(self, *a, **kw)

        monkeypatch.setattr(OrtEngine, "stylize_stats", counted)
        stats, after = frame(ws, jpeg())
        assert calls and all(e is new for e in calls)
        assert stats["style"] == "mosaic" and after.shape == before.shape
        assert np.abs(after - before).mean() < 1  # the same model file: the same picture


def test_other_sites_cannot_open_sessions(tiny_onnx, engine):
    """Browsers send Origin and apply no CORS to WebSockets: only this server's own pages
    (Origin's host = Host) and CORS_ORIGINS may open a session; programs send no Origin."""
    with make_client(engine, tiny_onnx, cors_origins="https://app.example.org") as c:
        refused = refusal(c, headers={"Origin": "https://evil.example.com"})
        assert refused.status_code == 403
        assert refused.json()["type"] == "urn:stylebox:problem:forbidden-origin"
        for origin in ("http://testserver", "https://app.example.org"):  # own page; listed
            with open_session(c, headers={"Origin": origin}) as ws:
                assert ws.receive_json()["type"] == "hello"
        with open_session(c) as ws:  # no Origin: not a browser
            assert ws.receive_json()["type"] == "hello"
        assert state_of(c.app).admission.live == 0


def test_statistics_are_carried_within_a_session_and_restart_on_a_new_style(client):
    """One StreamStylizer per session: frame B after frame A is normalised with statistics
    carried from A, so it differs from B alone; a style change starts afresh, so B after
    it is exactly B alone (same model, same bytes)."""
    y, x = np.mgrid[0:48, 0:64]
    base = np.stack([x * 4, y * 5, 255 - x * 3], -1).astype(np.uint8)
    a = encode(base, "PNG")
    b = encode(np.clip(base.astype(int) + 12, 0, 255).astype(np.uint8), "PNG")  # no cut
    with open_session(client) as ws:
        ws.receive_json()
        control(ws, style="candy")
        _, fresh = frame(ws, b)
    with open_session(client) as ws:
        ws.receive_json()
        control(ws, style="candy")
        frame(ws, a)
        _, carried = frame(ws, b)
        control(ws, style="mosaic")
        frame(ws, a)
        control(ws, style="candy")  # new weights: the running statistics start again
        _, restarted = frame(ws, b)
    diff = np.abs(carried - fresh).mean()
    assert diff > 3, diff
    np.testing.assert_array_equal(restarted, fresh)


def test_a_slow_frame_is_not_idleness(tiny_onnx, engine, monkeypatch):
    """A client waiting for a frame that takes longer than the idle timeout gets its answer;
    the idle clock runs from then on."""
    monkeypatch.setattr(live, "StreamStylizer", SlowStylizer)
    monkeypatch.setattr(SlowStylizer, "delay", 0.8)
    with make_client(engine, tiny_onnx, live_idle_timeout_s=0.3) as c, open_session(c) as ws:
        ws.receive_json()
        control(ws, style="candy")
        stats, _ = frame(ws, jpeg())
        assert stats["stylized"] == 1
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
        assert closed.value.code == live.IDLE_CLOSE
