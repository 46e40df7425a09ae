"""`stylebox bench` tooling: FLOP counts, roofline arithmetic, the report, one small full run.

Timings are not asserted (speed lives in the benchmark); the numbers' plumbing is.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from stylebox import bench
from stylebox.roofline import Peaks, graph_cost, machine_peaks
from stylebox.service.backends import openvino_installed
from tests.conftest import make_tiny_generator


def _conv_flops_from_torch(h: int, w: int) -> float:
    """2 x MACs (+ bias adds) of every Conv2d, from the PyTorch module's real output shapes."""
    import torch

    g = make_tiny_generator()
    total = [0.0]

    def hook(mod, _inp, out):
        k = mod.in_channels // mod.groups * mod.kernel_size[0] * mod.kernel_size[1]
        total[0] += out.numel() * (2 * k + (mod.bias is not None))

    for m in g.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.register_forward_hook(hook)
    with torch.no_grad():
        g(torch.rand(1, 3, h, w), torch.tensor([[1.0, 0.0, 0.0]]))
    return total[0]


@pytest.mark.parametrize("h,w", [(40, 52), (33, 17)])
def test_graph_cost_counts_conv_flops_exactly(tiny_onnx, h, w):
    cost = graph_cost(tiny_onnx, h, w)
    conv = cost.flops * cost.conv_share
    assert conv == pytest.approx(_conv_flops_from_torch(h, w), rel=1e-9)
    assert 0.5 < cost.conv_share < 1.0  # norms and activations add the rest
    g = make_tiny_generator()
    weights = sum(p.numel() * 4 for p in g.parameters())
    # Lower bound: weights + uint8 image in and out (+ the style vector, and the CIN
    # statistics in and out plus use_stats: model/export.py).
    stats = (2 * g.stats_size() + 1) * 4
    assert cost.min_bytes == pytest.approx(weights + 2 * h * w * 3 + 3 * 4 + stats, rel=1e-6)
    assert cost.bytes > cost.min_bytes and cost.intensity == cost.flops / cost.bytes


def test_graph_cost_scales_with_pixels(tiny_onnx):
    small, big = graph_cost(tiny_onnx, 64, 64), graph_cost(tiny_onnx, 128, 128)
    assert big.flops / small.flops == pytest.approx(4.0, rel=0.02)


def test_roofline_arithmetic_and_measured_peaks():
    p = Peaks(gemm_gflops=100.0, copy_gbs=10.0)
    assert p.attainable_gflops(2.0) == 20.0  # memory-bound side
    assert p.attainable_gflops(50.0) == 100.0  # compute-bound side
    measured = machine_peaks(budget_s=0.1, gemm_n=128, copy_mb=4)
    assert math.isfinite(measured.gemm_gflops) and measured.gemm_gflops > 0
    assert math.isfinite(measured.copy_gbs) and measured.copy_gbs > 0


def test_interleaved_reports_median_and_p90():
    calls = []
    out = bench._interleaved([lambda: calls.append("a"), lambda: calls.append("b")], 4)
    assert calls == ["a", "b"] + ["a", "b"] * 4  # warm-up, then round-robin
    assert len(out) == 2 and all(0 <= med <= p90 for med, p90 in out)


def _table(text: str, header: str) -> list[list[str]]:
    """Rows (cells) of the markdown table whose header line starts with `header`."""
    lines = text[text.index(header):].splitlines()
    rows = []
    for line in lines[2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


def _native() -> list[str]:
    """The OpenVINO precisions this CPU runs, in the bench's order; none without OpenVINO."""
    if not openvino_installed():
        return []
    from stylebox.service.backends.ov import PRECISIONS, cpu_precisions

    return [p for p in PRECISIONS if p in cpu_precisions()]


def test_small_full_run_writes_tables_and_plot(tiny_onnx, tmp_path, capsys):
    md = tmp_path / "docs" / "performance.md"
    rc = bench.main(["--model", str(tiny_onnx), "--peer", str(tiny_onnx), "--sizes", "32,40x24",
                     "--repeats", "2", "--requests", "3", "--concurrency", "1,2",
                     "--load-size", "48x32", "--sweep", "--sweep-size", "32",
                     "--providers", "CPUExecutionProvider", "--report", str(md)])
    assert rc == 0
    text = md.read_text()
    assert text == md.read_text() and "Command: `stylebox bench" in capsys.readouterr().out
    assert text.startswith("# Performance\n\n<!-- bench:begin -->\nCommand: `stylebox bench")
    assert text.endswith("](performance.png)\n<!-- bench:end -->\n")  # the markers docs use
    assert re.search(r"float32 GEMM \d+ GFLOP/s", text)

    lat = _table(text, "| model | engine | size |")
    native = _native()  # every precision OpenVINO runs on this CPU gets its rows
    engines = ["ORT CPU"] + [f"OpenVINO {p}" for p in native]
    # Engine by engine; in each, model by model (the peer last), each by pixel count.
    assert [(r[1], r[0], r[2]) for r in lat] == [
        (e, "α=0.25, 3 style(s)", size) for e in engines for _model in range(2)
        for size in ("40x24", "32x32")]
    assert {r[5] for r in lat if r[0] == lat[0][0]} >= {"1.00x"}  # the peer against itself
    assert {r[6] for r in lat if r[1] == "ORT CPU"} == {"1.00x"}  # ORT against itself
    for r in lat:
        assert float(r[3]) > 0 and float(r[4]) >= float(r[3])  # median <= p90
        assert float(r[7]) > 0 and r[10].endswith("%")  # GFLOP and roofline share
        assert r[6].endswith("x")
    for p in native:  # the hints: streams, 1 and 2 requests at once
        hints = _table(text, f"| OpenVINO {p} (32x32) |")
        assert [(r[0], r[2]) for r in hints] == [("latency", "1"), ("latency", "2"),
                                                 ("throughput", "1"), ("throughput", "2")]
        assert all(float(r[3]) > 0 and int(r[1]) >= 1 for r in hints)
    if "bf16" in native:  # what the report says of the CPU is true of it
        assert "OpenVINO bf16 GEMM" in text and "no AMX or AVX512_BF16" not in text
    elif native:
        assert "OpenVINO bf16 targets: not measurable here" in text
        assert "in OpenVINO: no AMX or AVX512_BF16" in text

    load = _table(text, "| server settings |")
    assert [(r[1], r[2], r[3], r[4]) for r in load] == [("48x32", "1", "3", "0"),
                                                        ("48x32", "2", "3", "0")]
    assert all(float(r[5]) > 0 and r[9].endswith("%") and r[10].endswith("%") for r in load)

    opts = _table(text, "| option (32x32, CPU) |")
    assert [r[0] for r in opts][:2] == ["defaults", "graph_optimization=disable"]
    assert opts[0][3] == "1.00x"
    startup = _table(text, "| start-up")
    assert len(startup) == 2 and all(float(r[1]) > 0 for r in startup)

    png = tmp_path / "docs" / "performance.png"
    assert "](performance.png)" in text
    from PIL import Image

    with Image.open(png) as im:
        assert im.format == "PNG" and im.width > 300
        assert np.asarray(im.convert("L")).std() > 5  # something was drawn
