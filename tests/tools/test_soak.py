"""stylebox/soak.py's mixed traffic, briefly (`make soak` runs it for minutes): a real
`stylebox serve` under stylize, bad input, video jobs on short clips with their status,
result and cancel, and live model reloads, all at once, stays up and answers no 5xx but
503. Short clips end while others decode and encode, which is how a source container freed
under the encoder thread crashed the server."""

from __future__ import annotations

from stylebox.soak import Server, mixed


def test_mixed_traffic_with_video_jobs_and_reloads_keeps_the_server_up(tiny_onnx, tmp_path):
    server = Server(tiny_onnx, {"STYLEBOX_VIDEO_DIR": str(tmp_path / "videos"),
                                "STYLEBOX_MAX_CONCURRENCY": "2", "STYLEBOX_MAX_QUEUE": "8"})
    try:
        server.wait_ready()
        m = mixed(server, seconds=8, clients=4, client_timeout=60)
        log = server.output()
    finally:
        server.stop()
    assert m["alive"] and m["healthz"] == 200, log[-3000:]
    assert m["5xx_other_than_503"] == 0 and m["hangs"] == 0, (m, log[-3000:])
    kinds = m["by_kind"]
    accepted = sum(kinds.get(k, {}).get(202, 0) for k in ("clip-gif", "clip-webm", "clip-mp4"))
    assert accepted >= 1 and "video-status" in kinds, kinds
