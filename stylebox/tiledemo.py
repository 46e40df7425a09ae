"""Tiled vs downscaled inference on a large synthetic image: time, peak memory, seams.

    stylebox tile-demo --out docs            # 3840x2160, α = 0.25, 8 styles

Builds an α = 0.25, 8-style model with random weights and random γ/β (so the "style" is
strong and visible; needs the train extra) unless --model is given, draws a synthetic photo,
and runs each way of handling it in its own process (peak RSS is per process):

- full:      the whole image in one inference (the reference; memory grows with the image)
- tiled:     service.tiling: statistics pass at --stats-pixels, then --tile-size tiles
- downscale: resized to --budget pixels, stylized, resized back (the old behaviour)
- naive:     the same tiles, each normalised with its own statistics (what seams look like)

It prints a markdown table (ms, peak RSS, mean |difference| to the full result, seam ratio)
and, with --out, writes 768x512 JPEG crops centred on a tile corner for each way.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from stylebox.bench import build_random_model
from stylebox.procs import rss_kib
from stylebox.samples import synthetic_photo
from stylebox.service.settings import parse_size
from stylebox.service.tiling import TileConfig, core_size, run_tiles

MODES = ("full", "tiled", "downscale", "naive")


def worker(args: argparse.Namespace) -> int:
    """One mode in this process: prints {"ms": [...], "peak_mb", "loaded_mb", "tiles"}."""
    from stylebox.service.backends.ort import OrtEngine
    from stylebox.service.pipeline import stylize_fitted

    img = np.load(args.image)
    engine = OrtEngine(args.model)
    w = engine.one_hot(args.style)
    loaded = rss_kib()[1] / 1024
    cfg = TileConfig(args.tile_size, 0, args.stats_pixels)
    tiles = 0

    ms = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        if args.worker == "full":
            out = engine.stylize(img, w)
        elif args.worker == "naive":
            out, tiles = run_tiles(engine, img, w, None, args.tile_size, cfg.margin_for(engine))
        else:
            res = stylize_fitted(engine, img, w, args.budget,
                                 cfg if args.worker == "tiled" else None)
            out, tiles = res.rgb, res.tiles
        ms.append((time.perf_counter() - t0) * 1000)
    np.save(args.result, out)
    peak_mb = rss_kib()[1] / 1024  # VmHWM: this process's own, not its parent's
    print(json.dumps({"ms": ms, "peak_mb": peak_mb, "loaded_mb": loaded, "tiles": tiles}))
    return 0


def seam_ratio(out: np.ndarray, core: int) -> float:
    """Mean |step| between neighbouring rows/columns on tile boundaries / elsewhere."""
    o = out.astype(np.float32)
    ratios = []
    for axis in (0, 1):
        steps = np.abs(np.diff(o, axis=axis)).mean(axis=(1 - axis, 2))
        edges = np.arange(core, o.shape[axis], core) - 1
        if len(edges):
            inside = np.setdiff1d(np.arange(len(steps)), edges)
            ratios.append(float(steps[edges].mean() / steps[inside].mean()))
    return max(ratios, default=1.0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="stylebox tile-demo", description=__doc__)
    p.add_argument("--model", help="an exported .onnx (default: build a random α model)")
    p.add_argument("--alpha", type=float, default=0.25)
    p.add_argument("--styles", type=int, default=8)
    p.add_argument("--style", type=int, default=3, help="style index to render")
    p.add_argument("--size", default="3840x2160", help="WxH of the synthetic image")
    p.add_argument("--budget", type=int, default=2_000_000,
                   help="max inference pixels (STYLEBOX_MAX_INFERENCE_PIXELS) for downscale")
    p.add_argument("--tile-size", type=int, default=1024)
    p.add_argument("--stats-pixels", type=int, default=1_000_000)
    p.add_argument("--runs", type=int, default=2, help="runs per mode (same process)")
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--crop", default="768x512", help="WxH of the crops written to --out")
    p.add_argument("--out", help="folder for tiling-<mode>.jpg crops")
    p.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)
    p.add_argument("--image", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args)
    from PIL import Image

    height, width = parse_size(args.size)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(args.model) if args.model else build_random_model(
            Path(tmp) / "model.onnx", args.alpha, args.styles)
        image = Path(tmp) / "image.npy"
        np.save(image, synthetic_photo(width, height, scene="landscape", shapes=60, grain=3))
        results, outs = {}, {}
        for mode in modes:
            result = Path(tmp) / f"{mode}.npy"
            cmd = [sys.executable, "-m", "stylebox.tiledemo", "--worker", mode, "--model",
                   str(model), "--image", str(image), "--result", str(result),
                   "--style", str(args.style), "--budget", str(args.budget), "--tile-size",
                   str(args.tile_size), "--stats-pixels", str(args.stats_pixels),
                   "--runs", str(args.runs)]
            r = subprocess.run(cmd, capture_output=True, text=True, check=True)
            results[mode] = json.loads(r.stdout.strip().splitlines()[-1])
            outs[mode] = np.load(result)
            print(f"{mode}: {results[mode]}", file=sys.stderr, flush=True)
        from stylebox.service.backends.ort import OrtEngine
        engine = OrtEngine(model)
        margin = TileConfig(args.tile_size).margin_for(engine)
        core = core_size(args.tile_size, margin, engine.grid)
    ref = outs.get("full")
    lines = [f"{width}x{height}, α = {args.alpha:g}, {args.styles} styles (random γ/β), "
             f"tiles {args.tile_size} px (core {core}, margin {margin}), statistics pass at "
             f"{args.stats_pixels / 1e6:g} MP, downscale budget {args.budget / 1e6:g} MP",
             "", "| mode | ms per image (runs) | peak RSS MB (after load) | tiles "
             "| mean abs diff to full | seam ratio |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for mode in modes:
        res, out = results[mode], outs[mode]
        mad = f"{np.abs(out.astype(np.int16) - ref).mean():.2f}" if ref is not None else "-"
        lines.append(f"| {mode} | {', '.join(f'{m:.0f}' for m in res['ms'])} | "
                     f"{res['peak_mb']:.0f} ({res['loaded_mb']:.0f}) | {res['tiles'] or '-'} | "
                     f"{mad} | {seam_ratio(out, core):.2f} |")
    print("\n".join(lines))
    if args.out:
        ch, cw = parse_size(args.crop)
        cx, cy = min(core * 2, width - cw // 2), min(core, height - ch // 2)  # a tile corner
        box = (max(0, cx - cw // 2), max(0, cy - ch // 2))
        folder = Path(args.out)
        folder.mkdir(parents=True, exist_ok=True)
        for mode in modes:
            crop = outs[mode][box[1]:box[1] + ch, box[0]:box[0] + cw]
            Image.fromarray(crop).save(folder / f"tiling-{mode}.jpg", quality=80)
        print(f"\ncrops {cw}x{ch} at x={box[0]}, y={box[1]} (tile corner at {cx}, {cy}) "
              f"written to {folder}/tiling-<mode>.jpg")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
