"""`stylebox bench`: ms per image for ONNX models on ONNX Runtime, against the full peer.

Models come from files (`--model`) or are built at a width multiplier (`--alpha`, random
weights: latency depends on shape, not on training). The peer is the full single-style
Johnson network (α = 1, one style: the pytorch/examples TransformerNet layout), exported
the same way, so every row also reports its speed-up over it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DEFAULT_SIZES = "256,512,1024,1920x1080"


@dataclass
class Row:
    model: str
    params: int
    size: str
    median_ms: float
    p90_ms: float


def _parse_sizes(text: str) -> list[tuple[int, int]]:
    out = []
    for part in text.split(","):
        w, _, h = part.strip().partition("x")
        out.append((int(h or w), int(w)))  # (H, W)
    return out


def _build(alpha: float, n_styles: int, folder: Path) -> Path:
    """Export a random model of the given shape (needs the train extra)."""
    from model.card import ModelCard, StyleInfo
    from model.export import export_onnx
    from model.network import Generator, GeneratorConfig

    card = ModelCard(name=f"bench-a{alpha}", version="bench", alpha=alpha,
                     styles=[StyleInfo(f"s{i}") for i in range(n_styles)])
    path = folder / f"a{alpha}-n{n_styles}.onnx"
    export_onnx(Generator(GeneratorConfig(n_styles=n_styles, alpha=alpha)), card, path,
                export_size=64)
    return path


def _n_params(path: Path) -> int:
    import onnx  # only for counting; the timing itself is pure ONNX Runtime

    return sum(int(np.prod(t.dims)) for t in onnx.load(str(path)).graph.initializer)


def time_model(path: Path, sizes, repeats: int, threads: int, provider: str) -> list[Row]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(path), opts, providers=[provider])
    n = sess.get_inputs()[1].shape[1]
    weights = np.zeros((1, n), np.float32)
    weights[0, 0] = 1.0
    rows = []
    for h, w in sizes:
        img = np.random.default_rng(0).integers(0, 256, (1, h, w, 3), dtype=np.uint8)
        feed = {"image": img, "style_weights": weights}
        sess.run(None, feed)  # warm-up: first run at a size allocates and plans
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            sess.run(None, feed)
            times.append((time.perf_counter() - t) * 1e3)
        times.sort()
        p90 = times[min(len(times) - 1, int(0.9 * len(times)))]
        rows.append(Row(path.stem, _n_params(path), f"{w}x{h}", statistics.median(times), p90))
    return rows


def to_markdown(rows: list[Row], peer: str | None) -> str:
    peer_ms = {r.size: r.median_ms for r in rows if r.model == peer}
    lines = ["| model | params | size (WxH) | median ms | p90 ms | speed-up vs peer |",
             "|---|---:|---|---:|---:|---:|"]
    for r in rows:
        ratio = f"{peer_ms[r.size] / r.median_ms:.2f}x" if r.size in peer_ms else ""
        lines.append(f"| {r.model} | {r.params:,} | {r.size} | {r.median_ms:.1f} | "
                     f"{r.p90_ms:.1f} | {ratio} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="stylebox bench", description=__doc__.split("\n")[0])
    p.add_argument("--model", action="append", default=[], help=".onnx file (repeatable)")
    p.add_argument("--alpha", action="append", type=float, default=[],
                   help="build a random model of this width (repeatable; needs the train extra)")
    p.add_argument("--styles", type=int, default=8, help="styles in built models")
    p.add_argument("--sizes", default=DEFAULT_SIZES, help=f"WxH or side list ({DEFAULT_SIZES})")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--provider", default="CPUExecutionProvider")
    p.add_argument("--no-peer", action="store_true", help="skip the α=1 single-style peer")
    p.add_argument("--out", help="also write the markdown table here")
    args = p.parse_args(argv)
    if not args.model and not args.alpha:
        args.alpha = [0.25]
    sizes = _parse_sizes(args.sizes)
    with tempfile.TemporaryDirectory() as tmp:
        paths = [Path(m) for m in args.model]
        paths += [_build(a, args.styles, Path(tmp)) for a in args.alpha]
        peer = None
        if not args.no_peer:
            peer_path = _build(1.0, 1, Path(tmp))
            peer_path = peer_path.rename(peer_path.with_name("peer-johnson-a1-n1.onnx"))
            paths.append(peer_path)
            peer = peer_path.stem
        rows = []
        for path in paths:
            rows += time_model(path, sizes, args.repeats, args.threads, args.provider)
            print(f"timed {path.stem}", flush=True)
    table = to_markdown(rows, peer)
    print(f"\n{args.provider}, {args.threads} threads, {args.repeats} runs per size\n\n{table}")
    if args.out:
        Path(args.out).write_text(table + "\n")
    return 0
