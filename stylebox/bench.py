"""`stylebox bench`: how fast inference is, against the full peer and the machine's floor.

Models come from files (`--model`) or are built at a width multiplier (`--alpha`, random
weights: latency depends on shape, not on training). The peer is the full single-style
Johnson network (α = 1, one style: the pytorch/examples TransformerNet layout), exported
the same way, so every row also reports its speed-up over it. Sections, each optional:

1. latency: median and p90 ms per image per size on every engine here (each ONNX Runtime
   provider, OpenVINO at every precision this CPU runs natively), through the service's own
   engines; FLOPs and bytes per image from the graph and the fraction of this machine's
   roofline reached (f32 GEMM, OpenVINO bf16 GEMM and memcpy rates measured in the same run);
2. load: images/s under 1, 2, 4 concurrent requests through the real HTTP service, and the
   share of a request spent outside inference (stylebox/loadtest.py);
3. options: the session options measured against each other (service/session_options.py),
   and OpenVINO's latency vs throughput hint at 1 and 2 requests at once.

It prints markdown and, with `--report`, writes it (and a plot) into a markdown file between
`<!-- bench:begin -->` and `<!-- bench:end -->`, keeping the prose around it.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

from stylebox.loadtest import percentile
from stylebox.report import write_between
from stylebox.roofline import Cost, Peaks, graph_cost, machine_peaks, openvino_gemm_gflops
from stylebox.samples import photo_jpeg, synthetic_photo
from stylebox.service.session_options import CPU, SessionConfig
from stylebox.service.settings import parse_size

DEFAULT_SIZES = "256,512,1024,1920x1080"
PEER = "peer-johnson-a1-n1"
ORT_CPU = "ORT CPU"
_SKIP_PROVIDERS = {"AzureExecutionProvider"}  # remote endpoints, not local inference


@dataclass(frozen=True)
class Runner:
    """One engine configuration to time: ONNX Runtime on a provider, or OpenVINO at a
    precision. `make(path, threads)` builds the service's engine for a model file."""

    label: str  # "ORT CPU", "ORT CUDA", "OpenVINO bf16"
    precision: str
    on_cpu: bool  # the CPU roofline applies
    make: Callable[[Path, int], Any]


@dataclass
class Row:
    model: str  # file stem
    label: str  # α and style count, from the card
    provider: str  # the Runner's label
    size: str  # WxH
    pixels: int
    median_ms: float
    p90_ms: float
    cost: Cost | None = None
    precision: str = "f32"
    on_cpu: bool = True


def _peaks(chosen: list[Runner]) -> Peaks:
    """This machine's f32 GEMM and memcpy rates, and each low precision's GEMM in OpenVINO."""
    peaks = machine_peaks()
    for p in dict.fromkeys(r.precision for r in chosen if r.precision != "f32"):
        peaks.low[p] = openvino_gemm_gflops(p)
    return peaks


def parse_sizes(text: str) -> list[tuple[int, int]]:
    return [parse_size(part) for part in text.split(",") if part.strip()]  # (H, W)


def build_random_model(path: Path, alpha: float, n_styles: int, seed: int = 0) -> Path:
    """Export a model of this shape with random weights and random γ/β (visible, untrained
    styles); latency depends on shape, not training. Needs the train extra."""
    import torch

    from stylebox.model.card import ModelCard, StyleInfo
    from stylebox.model.export import export_onnx
    from stylebox.model.network import Generator, GeneratorConfig

    torch.manual_seed(seed)
    g = Generator(GeneratorConfig(n_styles=n_styles, alpha=alpha)).eval().randomize_styles()
    card = ModelCard(name=f"random-a{alpha}", version="random", alpha=alpha,
                     styles=[StyleInfo(f"s{i}") for i in range(n_styles)])
    export_onnx(g, card, path, export_size=64)
    return path


def _build(alpha: float, n_styles: int, folder: Path) -> Path:
    return build_random_model(folder / f"a{alpha}-n{n_styles}.onnx", alpha, n_styles)


def _interleaved(fns: list, repeats: int) -> list[tuple[float, float]]:
    """(median, p90) ms of each fn over `repeats` rounds, one call of each per round.

    Round-robin rather than one function after another: on a shared machine a burst of
    someone else's load then hits every candidate alike, which keeps the ratios honest.
    """
    for fn in fns:
        fn()  # the first run at a size plans memory (and on CUDA searches conv algorithms)
    ms: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, out in zip(fns, ms, strict=True):
            t = time.perf_counter()
            fn()
            out.append((time.perf_counter() - t) * 1e3)
    return [(statistics.median(xs), percentile(xs, 0.9)) for xs in ms]


def _engine(path: Path, provider: str, threads: int, cfg: SessionConfig | None = None):
    """The service's Engine, always with ORT's spin-wait off (the service's default too):
    interleaved sessions would otherwise run while the previous session's idle threads still
    spin on the same cores (docs/performance.md)."""
    from stylebox.service.backends.ort import OrtEngine

    cfg = replace(cfg or SessionConfig(), intra_op_spinning=False)
    return OrtEngine(path, [provider], threads, options=cfg)


def _ov_engine(path: Path, threads: int, precision: str, hint: str = "latency",
               requests: int = 1):
    from stylebox.service.backends.ov import OpenVinoEngine

    return OpenVinoEngine(path, precision, hint, threads, requests)


def runners(engines: str, providers: list[str], precisions: str) -> list[Runner]:
    """What `--engines` / `--providers` / `--precisions` select among what this host has."""
    from stylebox.service.backends import openvino_installed

    wanted = {"onnxruntime", "openvino"} if engines == "all" else \
        {e.strip() for e in engines.split(",")}
    out = []
    if "onnxruntime" in wanted:
        out += [Runner(f"ORT {p.removesuffix('ExecutionProvider')}", "f32", p == CPU,
                       lambda path, threads, p=p: _engine(path, p, threads)) for p in providers]
    if "openvino" in wanted and openvino_installed():
        from stylebox.service.backends.ov import PRECISIONS, cpu_precisions

        native = [p for p in PRECISIONS if p in cpu_precisions()]
        chosen = native if precisions == "all" else \
            [p for p in native if p in precisions.split(",")]
        out += [Runner(f"OpenVINO {p}", p, True,
                       lambda path, threads, p=p: _ov_engine(path, threads, p)) for p in chosen]
    return out


def time_models(paths: list[Path], sizes, repeats: int, threads: int,
                runner: Runner) -> list[Row]:
    """Every model at every size on one engine, the models interleaved per size."""
    engines = [runner.make(p, threads) for p in paths]
    rows = []
    for h, wd in sizes:
        img = synthetic_photo(wd, h, scene="noise")
        fns = [partial(e.stylize, img, e.one_hot(0)) for e in engines]
        for path, e, (med, p90) in zip(paths, engines, _interleaved(fns, repeats), strict=True):
            label = f"α={e.card.alpha:g}, {e.card.n_styles} style(s)"
            rows.append(Row(path.stem, label, runner.label, f"{wd}x{h}", h * wd, med, p90,
                            precision=runner.precision, on_cpu=runner.on_cpu))
        print(f"timed {wd}x{h} on {runner.label}", flush=True)
    order = {p.stem: i for i, p in enumerate(paths)}
    return sorted(rows, key=lambda r: (order[r.model], r.pixels))


def _ort_cpu_ms(rows: list[Row]) -> dict[tuple[str, str], float]:
    """(model, size) -> ONNX Runtime CPU median ms: the baseline of `vs ORT CPU` and targets."""
    return {(r.model, r.size): r.median_ms for r in rows if r.provider == ORT_CPU}


def latency_table(rows: list[Row], peaks: Peaks | None) -> str:
    peer_ms = {(r.provider, r.size): r.median_ms for r in rows if r.model == PEER}
    ort_ms = _ort_cpu_ms(rows)
    lines = ["| model | engine | size | median ms | p90 ms | vs peer | vs ORT CPU | GFLOP "
             "| GB moved | GFLOP/s | % roofline |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        peer = peer_ms.get((r.provider, r.size))
        ratio = f"{peer / r.median_ms:.2f}x" if peer else ""
        base = ort_ms.get((r.model, r.size))
        vs_ort = f"{base / r.median_ms:.2f}x" if base else ""
        gflop = gb = rate = roof = ""
        if r.cost:
            rate_v = r.cost.flops / r.median_ms / 1e6
            gflop, gb, rate = (f"{r.cost.flops / 1e9:.2f}", f"{r.cost.bytes / 1e9:.2f}",
                               f"{rate_v:.1f}")
            # The peaks are this CPU's (GPU rows need theirs); bf16 rows against bf16's.
            attainable = peaks.attainable_gflops(r.cost.intensity, r.precision) if peaks \
                and r.on_cpu else None
            roof = f"{100 * rate_v / attainable:.0f}%" if attainable else ""
        lines.append(f"| {r.label} | {r.provider} | {r.size} | {r.median_ms:.1f} "
                     f"| {r.p90_ms:.1f} | {ratio} | {vs_ort} | {gflop} | {gb} | {rate} | {roof} |")
    return "\n".join(lines)


def sweep(path: Path, size: tuple[int, int], repeats: int, threads: int) -> str:
    """Each session option against the defaults, one at a time, at one size on the CPU."""
    h, wd = size
    img = synthetic_photo(wd, h, scene="noise")
    base = SessionConfig()
    variants: list[tuple[str, SessionConfig, int]] = [("defaults", base, threads)]
    variants += [(f"graph_optimization={lvl}", replace(base, graph_optimization=lvl), threads)
                 for lvl in ("disable", "basic", "extended")]
    if threads != 1:
        variants.append(("intra_op_threads=1", base, 1))
    variants += [("cpu_mem_arena=false", replace(base, cpu_mem_arena=False), threads),
                 ("io_binding=on", replace(base, io_binding="on"), threads)]
    lines = [f"| option ({wd}x{h}, CPU) | median ms | p90 ms | vs defaults |",
             "|---|---:|---:|---:|"]
    engines = [_engine(path, CPU, n, cfg) for _, cfg, n in variants]
    fns = [partial(e.stylize, img, e.one_hot(0)) for e in engines]
    times = _interleaved(fns, repeats)
    for (name, _, _), (med, p90) in zip(variants, times, strict=True):
        lines.append(f"| {name} | {med:.1f} | {p90:.1f} | {times[0][0] / med:.2f}x |")
    return "\n".join(lines) + "\n\n" + _startup(path, threads)


def _startup(path: Path, threads: int, repeats: int = 5) -> str:
    """Session start-up: optimising the graph on every load vs loading the cached result."""

    def load_ms(cfg: SessionConfig) -> float:
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            _engine(path, CPU, threads, cfg)
            times.append((time.perf_counter() - t) * 1e3)
        return statistics.median(times)

    with tempfile.TemporaryDirectory() as cache:
        fresh = load_ms(SessionConfig())
        cfg = SessionConfig(optimized_model_dir=cache)
        _engine(path, CPU, threads, cfg)  # writes the optimised model
        cached = load_ms(cfg)
    return ("| start-up (engine load, median of 5) | ms |\n|---|---:|\n"
            f"| optimise on load (default) | {fresh:.1f} |\n"
            f"| load the saved optimised model (`OPTIMIZED_MODEL_DIR`) | {cached:.1f} |")


def load_section(model: Path, size: tuple[int, int], levels: list[int], requests: int,
                 variants: list[str]) -> tuple[str, list]:
    from stylebox.loadtest import load_run, serving

    h, wd = size
    body = photo_jpeg(wd, h, grain=12)
    lines = ["| server settings | size | concurrent | ok | 503 | images/s | p50 ms | p90 ms "
             "| inference ms | not inference (incl. queue wait): share of request "
             "| vs inference |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    results = []
    for variant in variants:
        env = dict(kv.split("=", 1) for kv in variant.split())
        with serving(model, env) as base:
            for c in levels:
                label = variant.replace("STYLEBOX_", "") or "defaults"
                r = load_run(base, body, f"{wd}x{h}", c, requests, label)
                results.append(r)
                lines.append(
                    f"| {r.variant} | {r.size} | {c} | {r.ok} | {r.busy} "
                    f"| {r.images_per_s:.2f} | {r.p50_ms:.0f} | {r.p90_ms:.0f} "
                    f"| {r.inference_ms:.0f} | {100 * r.outside_share:.0f}% "
                    f"| {100 * r.outside_ratio:.0f}% |")
                print(f"load {r.variant} c={c}: {r.images_per_s:.2f} img/s", flush=True)
    return "\n".join(lines), results


def plot(rows: list[Row], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display; file output only
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for key in dict.fromkeys((r.label, r.provider) for r in rows):
        pts = sorted((r.pixels / 1e6, r.median_ms) for r in rows if (r.label, r.provider) == key)
        name = key[0] + ("" if key[1] == ORT_CPU else f" ({key[1]})")
        ax.plot(*zip(*pts, strict=True), marker="o", label=name)
    ax.set(xscale="log", yscale="log", xlabel="megapixels per image", ylabel="median ms / image",
           title="stylebox inference, by engine")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def targets(rows: list[Row], load: list) -> list[str]:
    """The issue's CPU targets, checked on this run's numbers (they live here, not in tests)."""
    by = {(r.label.split(",")[0], r.model, r.size): r.median_ms for r in rows
          if r.provider == ORT_CPU}
    out = []
    a25 = {k[2]: v for k, v in by.items() if k[0] == "α=0.25" and k[1] != PEER}
    peer = {k[2]: v for k, v in by.items() if k[1] == PEER}
    if "512x512" in a25 and "512x512" in peer:
        ratio = peer["512x512"] / a25["512x512"]
        out.append(f"- α = 0.25 at 512² is {ratio:.1f}x faster than the α = 1 peer "
                   f"(target ≥ 5x): {'met' if ratio >= 5 else 'NOT met'}")
    if "1920x1080" in a25:
        ms = a25["1920x1080"]
        out.append(f"- α = 0.25 at 1920x1080: {ms:.0f} ms (target < 1000 ms): "
                   f"{'met' if ms < 1000 else 'NOT met'}")
    out += _bf16_targets(rows)
    for r in load[:1]:  # the first server variant (the defaults in `make bench`)
        if r.concurrency == 1 and r.size == "512x512":
            out.append(f"- service overhead at 512² ({r.variant}, one request at a time): "
                       f"{100 * r.outside_ratio:.0f}% of inference time (target ≤ 15%): "
                       f"{'met' if r.outside_ratio <= 0.15 else 'NOT met'}")
    return out


def _bf16_targets(rows: list[Row]) -> list[str]:
    """OpenVINO bf16 against ONNX Runtime f32 on the same file (the bf16 speed targets)."""
    ort_ms = _ort_cpu_ms(rows)
    out = []
    for r in rows:
        base = ort_ms.get((r.model, r.size))
        goal = {"512x512": 2.2, "1920x1080": 2.8}.get(r.size)
        if r.precision != "bf16" or base is None or goal is None or r.model == PEER:
            continue
        ratio = base / r.median_ms
        out.append(f"- {r.label} at {r.size}: OpenVINO bf16 {r.median_ms:.0f} ms vs ORT f32 "
                   f"{base:.0f} ms = {ratio:.2f}x (target ≥ {goal}x): "
                   f"{'met' if ratio >= goal else 'NOT met'}")
    if not any(r.precision == "bf16" for r in rows):
        out.append("- OpenVINO bf16 targets: not measurable here (" + _low_precision_note() + ")")
    return out


def _low_precision_note() -> str:
    from stylebox.service.backends import openvino_installed

    if not openvino_installed():
        return "openvino is not installed"
    from stylebox.service.backends.ov import cpu_name, cpu_precisions

    native = cpu_precisions()
    why = "" if "bf16" in native else ": no AMX or AVX512_BF16"
    return f"{cpu_name()} runs {', '.join(sorted(native))} in OpenVINO{why}"


def ov_hints(path: Path, size: tuple[int, int], repeats: int, threads: int,
             precision: str) -> str:
    """OpenVINO's latency vs throughput hint, one and two requests at once: images/s."""
    h, wd = size
    img = synthetic_photo(wd, h, scene="noise")
    lines = [f"| OpenVINO {precision} ({wd}x{h}) | streams | at once | images/s | ms per image "
             "wall |", "|---|---:|---:|---:|---:|"]
    for hint in ("latency", "throughput"):
        engine = _ov_engine(path, threads, precision, hint, requests=2)
        run = partial(engine.stylize, img, engine.one_hot(0))
        for clients in (1, 2):
            n = max(2, repeats) * clients
            with ThreadPoolExecutor(clients) as pool:
                list(pool.map(lambda _, f=run: f(), range(clients)))  # warm
                t = time.perf_counter()
                list(pool.map(lambda _, f=run: f(), range(n)))
                dt = time.perf_counter() - t
            lines.append(f"| {hint} | {engine.runtime['streams']} | {clients} | {n / dt:.2f} "
                         f"| {1000 * dt / n:.1f} |")
    return "\n".join(lines)


def machine_text(peaks: Peaks | None, load_before: float) -> str:
    import onnxruntime as ort

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    text = (f"- when: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; load average before the run "
            f"{load_before:.2f}, after the latency runs {os.getloadavg()[0]:.2f}\n"
            f"- CPU: {cpu}, {os.cpu_count()} logical cores; "
            f"ONNX Runtime {ort.__version__}; {_openvino_version()}; "
            f"Python {platform.python_version()}\n")
    if peaks:
        low = "".join(f", OpenVINO {p} GEMM {g:.0f} GFLOP/s" for p, g in peaks.low.items())
        text += (f"- measured in this run (best of before and after the latency runs): float32 "
                 f"GEMM {peaks.gemm_gflops:.0f} GFLOP/s (numpy BLAS, all cores){low}, memcpy "
                 f"{peaks.copy_gbs:.1f} GB/s (read + write)\n")
    return text


def _openvino_version() -> str:
    from stylebox.service.backends import openvino_installed

    if not openvino_installed():
        return "OpenVINO not installed"
    import openvino as ov

    return f"OpenVINO {ov.get_version().split('-')[0]} ({_low_precision_note()})"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="stylebox bench", description=__doc__.split("\n")[0])
    p.add_argument("--model", action="append", default=[], help=".onnx file (repeatable)")
    p.add_argument("--alpha", action="append", type=float, default=[],
                   help="build a random model of this width (repeatable; needs the train extra)")
    p.add_argument("--styles", type=int, default=8, help="styles in built models")
    p.add_argument("--sizes", default=DEFAULT_SIZES, help=f"WxH or side list ({DEFAULT_SIZES})")
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--threads", type=int, default=0, help="intra-op threads (0 = ORT default)")
    p.add_argument("--providers", default="all",
                   help="comma list of ORT providers, or 'all' available ones")
    p.add_argument("--engines", default="all",
                   help="onnxruntime, openvino (comma list), or 'all' installed ones")
    p.add_argument("--precisions", default="all",
                   help="OpenVINO precisions (f32,bf16,f16), or 'all' this CPU runs natively")
    p.add_argument("--no-peer", action="store_true", help="skip the α=1 single-style peer")
    p.add_argument("--peer", help="use this .onnx as the peer instead of building it")
    p.add_argument("--no-roofline", action="store_true", help="skip FLOP counts and peaks")
    p.add_argument("--load-size", default="512", help="image size for the HTTP load run")
    p.add_argument("--concurrency", default="1,2,4", help="'' skips the HTTP load run")
    p.add_argument("--requests", type=int, default=20, help="requests per concurrency level")
    p.add_argument("--load-env", action="append", default=[],
                   help="server settings for one load variant, e.g. "
                        "'STYLEBOX_MAX_CONCURRENCY=1 STYLEBOX_INTRA_OP_THREADS=2' (repeatable)")
    p.add_argument("--sweep", action="store_true", help="measure the session options")
    p.add_argument("--sweep-size", default="512")
    p.add_argument("--report", help="write the results into this markdown file")
    p.add_argument("--plot", help="plot file (default: next to --report, .png)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not args.model and not args.alpha:
        args.alpha = [0.25]
    import onnxruntime as ort

    from stylebox.errors import UserError

    try:  # every size and level up front: a typo stops the run before minutes of timing
        sizes = parse_sizes(args.sizes)
        load_size, sweep_size = parse_size(args.load_size), parse_size(args.sweep_size)
        levels = [int(c) for c in args.concurrency.split(",")] if args.concurrency.strip() else []
    except ValueError as e:
        raise UserError(f"--sizes, --load-size, --sweep-size or --concurrency: {e}") from None
    providers = [p for p in ort.get_available_providers() if p not in _SKIP_PROVIDERS] \
        if args.providers == "all" else [p.strip() for p in args.providers.split(",")]
    chosen = runners(args.engines, providers, args.precisions)
    load_before = os.getloadavg()[0]
    peaks = None if args.no_roofline else _peaks(chosen)
    head = machine_text(peaks, load_before)
    sections = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = [Path(m) for m in args.model]
        paths += [_build(a, args.styles, Path(tmp)) for a in args.alpha]
        if not args.no_peer:
            src = Path(args.peer) if args.peer else _build(1.0, 1, Path(tmp))
            peer_path = Path(tmp) / f"{PEER}.onnx"
            peer_path.write_bytes(src.read_bytes())
            paths.append(peer_path)
        rows: list[Row] = []
        for runner in chosen:
            rows += time_models(paths, sizes, args.repeats, args.threads, runner)
        if peaks:  # again after the timings: keep the better of two (someone else's load)
            again = _peaks(chosen)
            peaks = Peaks(max(peaks.gemm_gflops, again.gemm_gflops),
                          max(peaks.copy_gbs, again.copy_gbs),
                          {p: max(g, again.low[p]) for p, g in peaks.low.items()})
            head = machine_text(peaks, load_before)
            costs = {}
            for r in rows:
                key = (r.model, r.size)
                if key not in costs:
                    w, h = (int(v) for v in r.size.split("x"))
                    costs[key] = graph_cost(next(p for p in paths if p.stem == r.model), h, w)
                r.cost = costs[key]
        sections.append(f"### Latency per image ({args.repeats} runs per size after one "
                        f"warm-up; threads per inference {args.threads or 'the default'})\n\n"
                        + latency_table(rows, peaks))
        load = []
        if levels:
            text, load = load_section(paths[0], load_size, levels, args.requests,
                                      args.load_env or [""])
            sections.append(f"### HTTP load: {paths[0].stem}, JPEG in and out, {args.requests} "
                            "requests per level\n\n" + text)
        if args.sweep:
            sections.append("### Session options\n\n"
                            + sweep(paths[0], sweep_size, args.repeats, args.threads))
            for runner in chosen:
                if runner.label.startswith("OpenVINO"):
                    sections.append("### OpenVINO hints\n\n" + ov_hints(
                        paths[0], sweep_size, args.repeats, args.threads, runner.precision))
    if found := targets(rows, load):
        sections.append("### Targets (this run)\n\n" + "\n".join(found))
    cmd = "stylebox bench " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    body = f"Command: `{cmd}`\n\n{head}\n" + "\n\n".join(sections)
    print("\n" + body)
    if args.report:
        md = Path(args.report)
        png = Path(args.plot) if args.plot else md.with_suffix(".png")
        png.parent.mkdir(parents=True, exist_ok=True)
        plot(rows, png)
        rel = os.path.relpath(png, md.parent)
        write_between(md, "bench", body + f"\n\n![median ms per image vs megapixels]({rel})\n",
                      title="Performance")
        print(f"\nwrote {md} and {png}")
    return 0
