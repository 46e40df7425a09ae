"""`stylebox live-bench`: one live session per size over a real server's WebSocket."""

from __future__ import annotations

import json

from stylebox.livebench import clip_jpegs, main
from tests.conftest import pixels


def test_live_bench_measures_each_size(tiny_onnx, capsys):
    assert main(["--model", str(tiny_onnx), "--sizes", "64x48,32x24", "--seconds", "1.5",
                 "--warmup", "0.5", "--style", "candy:0.5,udnie:0.5"]) == 0
    out = capsys.readouterr().out
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert [r["size"] for r in rows] == ["64x48", "32x24"]
    for r in rows:
        assert r["frames"] >= 2 and r["fps"] > 0 and r["dropped"] == 0
        assert r["latency_ms_p90"] >= r["latency_ms_median"] >= r["server_ms_median"] \
            >= r["inference_ms_median"] > 0
        assert r["engine"] != "unknown" and r["style"] == "candy:0.5,udnie:0.5"
    assert "| 64x48 |" in out


def test_the_clip_moves():
    a, b = (pixels(j).astype(int) for j in clip_jpegs(64, 48, 2))
    assert a.shape == (48, 64, 3) and abs(a - b).mean() > 1
