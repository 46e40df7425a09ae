"""`stylebox live-bench`: one live session per size over a real server's WebSocket."""

from __future__ import annotations

import json
import subprocess
import sys

from stylebox.livebench import clip_jpegs, main
from stylebox.procs import serving
from tests.conftest import ROOT, env_without, pixels


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


def _live_bench(*args: str, env: dict[str, str]) -> dict:
    """`stylebox live-bench ARGS` in a subprocess: its one JSON row (a 32x24 size)."""
    r = subprocess.run([sys.executable, "-m", "stylebox", "live-bench", "--sizes", "32x24",
                        "--seconds", "1", "--warmup", "0.3", *args], env=env, cwd=ROOT,
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "| 32x24 |" in r.stdout  # the table, printed after measuring
    return json.loads(next(line for line in r.stdout.splitlines() if line.startswith("{")))


def test_live_bench_url_runs_on_the_runtime_install(tiny_onnx, tmp_path):
    """`--url` on an install without httpx (the dev extra's): it measured, then crashed
    reading the engine from GET /model."""
    with serving(tiny_onnx) as base:
        row = _live_bench("--url", base.replace("http", "ws", 1) + "/live",
                          env=env_without(tmp_path, "httpx"))
    assert row["frames"] >= 2 and row["fps"] > 0 and row["engine"] != "unknown"


def test_live_bench_serves_on_the_runtime_install(tiny_onnx, tmp_path):
    """Without `--url` it starts `stylebox serve` and waits for it, without httpx too."""
    row = _live_bench("--model", str(tiny_onnx), env=env_without(tmp_path, "httpx"))
    assert row["frames"] >= 2 and row["engine"] != "unknown"
