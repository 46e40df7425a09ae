"""Reliability soak: a real `stylebox serve` on 127.0.0.1 under a burst and mixed traffic.

    stylebox soak [--model m.onnx] [--seconds 60] [--clients 12] [--burst 32]

1. Burst: `--burst` concurrent 4K (3840x2160) JPEG uploads at once. Admission control
   admits max_concurrency + max_queue of them and answers the rest 503 at once; the server's
   peak RSS (VmHWM) shows memory stays bounded.
2. Mixed: `--clients` threads for `--seconds`, each picking at random: stylize at several
   sizes, styles and blends, bad inputs (text, truncated, unknown style, bad weights, header
   bombs), video jobs on short clips (GIF, WebM with Opus, MP4 with AAC) and their status,
   result, cancel and delete, a model reload now and then, health, styles, metrics. Above capacity
   by design: many jobs end or are cancelled while others decode, encode and reload.

Reports requests served, p50/p99 latency, 503s, and proves 0 5xx, 0 hangs (a client
timeout), 0 crashes (the process is alive and /healthz answers at the end), and the peak
RSS. Loopback only; bounded in time and count. Linux (reads /proc for RSS).
"""

from __future__ import annotations

import argparse
import random
import struct
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter
from pathlib import Path

from stylebox.loadtest import percentile, run_threads
from stylebox.procs import ServeProcess, rss_kib
from stylebox.samples import export_tiny_model, photo_jpeg

UHD = (3840, 2160)


def header_bomb(width: int, height: int) -> bytes:
    """A valid PNG whose header claims width x height, with almost no pixel data."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + tag + data
                + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


class Server(ServeProcess):
    """The service under test: other STYLEBOX_* settings of the caller pass through. Admin
    reload needs no key here: the mixed traffic reloads the model."""

    def __init__(self, model: Path, env: dict[str, str]) -> None:
        super().__init__(model, {"STYLEBOX_DRAIN_S": "0",
                                 "STYLEBOX_ALLOW_ADMIN_WITHOUT_KEY": "true", **env},
                         inherit_settings=True)


class Recorder:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.codes: Counter[int] = Counter()
        self.by_kind: dict[str, Counter[int]] = {}
        self.ok_ms: list[float] = []
        self.all_ms: list[float] = []
        self.hangs = 0
        self.transport_errors: Counter[str] = Counter()

    def add(self, kind: str, status: int, ms: float) -> None:
        with self.lock:
            self.codes[status] += 1
            self.by_kind.setdefault(kind, Counter())[status] += 1
            self.all_ms.append(ms)
            if status == 200 and kind.startswith("stylize"):
                self.ok_ms.append(ms)

    def error(self, kind: str, exc: Exception) -> None:
        import httpx

        with self.lock:
            if isinstance(exc, httpx.TimeoutException):
                self.hangs += 1
            self.transport_errors[f"{kind}: {type(exc).__name__}"] += 1


def burst(server: Server, n: int, client_timeout: float) -> dict:
    import httpx

    bodies = [photo_jpeg(*UHD, seed=i % 4) for i in range(4)]
    rec = Recorder()
    start = threading.Barrier(n)
    rss_before = rss_kib(server.proc.pid)[0]

    def one(i: int) -> None:
        with httpx.Client(timeout=client_timeout) as c:
            start.wait()
            t0 = time.perf_counter()
            try:
                r = c.post(f"{server.base}/stylize?style=candy&format=jpeg", content=bodies[i % 4],
                           headers={"Content-Type": "image/jpeg"})
                rec.add("stylize-4k", r.status_code, (time.perf_counter() - t0) * 1000)
            except httpx.HTTPError as e:
                rec.error("stylize-4k", e)

    t0 = time.perf_counter()
    run_threads(one, n, pass_index=True)
    rss, peak = rss_kib(server.proc.pid)
    return {"uploads": n, "upload_mb": round(len(bodies[0]) / 1e6, 2),
            "wall_s": round(time.perf_counter() - t0, 1), "codes": dict(rec.codes),
            "p50_ok_ms": round(percentile(rec.ok_ms, 0.5)),
            "max_ok_ms": round(max(rec.ok_ms or [0])),
            "transport_errors": dict(rec.transport_errors), "hangs": rec.hangs,
            "rss_before_mib": round(rss_before / 1024), "rss_after_mib": round(rss / 1024),
            "peak_rss_mib": round(peak / 1024)}


def mixed(server: Server, seconds: float, clients: int, client_timeout: float,
          seed: int = 0) -> dict:
    import httpx

    sizes = {"stylize-256": photo_jpeg(256, 256), "stylize-640x480": photo_jpeg(640, 480, 1),
             "stylize-1080p": photo_jpeg(1920, 1080, 2)}
    small = sizes["stylize-256"]
    clips = short_clips()
    jobs: list[str] = []  # ids of accepted video jobs (list.append is atomic)
    base = server.base
    jpeg = {"Content-Type": "image/jpeg"}

    def pick(rng: random.Random) -> tuple[str, str, str, bytes | None, dict]:
        roll = rng.random()
        if roll < 0.20:  # video: a new job, or the status, result, cancel or delete of one
            sub = rng.random()
            job = rng.choice(jobs) if jobs else None
            if job is None or sub < 0.4:
                kind = rng.choice(list(clips))
                body, ctype = clips[kind]
                return (kind, "POST", f"/videos?style={rng.choice(['candy', 'mosaic'])}"
                        f"&stabilize={rng.choice(['true', 'false'])}", body,
                        {"Content-Type": ctype})
            if sub < 0.7:
                return "video-status", "GET", f"/videos/{job}", None, {}
            if sub < 0.85:
                return "video-result", "GET", f"/videos/{job}/result", None, {}
            if sub < 0.93:
                return "video-cancel", "POST", f"/videos/{job}/cancel", None, {}
            return "video-delete", "DELETE", f"/videos/{job}", None, {}
        if roll < 0.21:
            return "reload", "POST", "/admin/reload", None, {}
        if roll < 0.55:
            kind = rng.choice(["stylize-256", "stylize-256", "stylize-640x480", "stylize-1080p"])
            style = rng.choice(["candy", "mosaic", "udnie", "candy:0.7,mosaic:0.3",
                                "candy,mosaic,udnie"])
            fmt = rng.choice(["png", "jpeg", "webp"])
            return kind, "POST", f"/stylize?style={style}&format={fmt}", sizes[kind], jpeg
        if roll < 0.80:
            bad = rng.choice([
                ("bad-text", "candy", b"not an image at all", jpeg),
                ("bad-truncated", "candy", small[: len(small) // 3], jpeg),
                ("bad-style", "vangogh", small, jpeg),
                ("bad-weights", "candy:-1,mosaic:nan", small, jpeg),
                ("bad-bomb", "candy", header_bomb(60_000, 60_000), {"Content-Type": "image/png"}),
                ("bad-type", "candy", small, {"Content-Type": "text/plain"}),
                ("bad-empty", "candy", b"", jpeg),
            ])
            kind, style, body, headers = bad
            return kind, "POST", f"/stylize?style={style}", body, headers
        kind = rng.choice(["healthz", "readyz", "styles", "metrics", "model"])
        return kind, "GET", f"/{kind}", None, {}

    rec = Recorder()
    peak = [0]
    stop = threading.Event()
    deadline = time.monotonic() + seconds

    def sampler() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss_kib(server.proc.pid)[0])
            stop.wait(0.25)

    def client(i: int) -> None:
        rng = random.Random(seed * 1000 + i)
        with httpx.Client(base_url=base, timeout=client_timeout) as c:
            while time.monotonic() < deadline:
                kind, method, url, body, headers = pick(rng)
                t0 = time.perf_counter()
                try:
                    r = c.request(method, url, content=body, headers=headers)
                    rec.add(kind, r.status_code, (time.perf_counter() - t0) * 1000)
                    if kind.startswith("clip-") and r.status_code == 202:
                        jobs.append(r.json()["id"])
                except httpx.HTTPError as e:
                    rec.error(kind, e)

    mon = threading.Thread(target=sampler)
    mon.start()
    t0 = time.perf_counter()
    run_threads(client, clients, pass_index=True)
    wall = time.perf_counter() - t0
    stop.set()
    mon.join()
    alive = server.proc.poll() is None
    health = httpx.get(f"{base}/healthz", timeout=5).status_code if alive else None
    served = sum(rec.codes.values())
    return {
        "seconds": round(wall, 1), "clients": clients, "requests": served,
        "per_s": round(served / wall, 1), "codes": dict(sorted(rec.codes.items())),
        "by_kind": {k: dict(sorted(v.items())) for k, v in sorted(rec.by_kind.items())},
        "stylized_ok": len(rec.ok_ms), "p50_ms": round(percentile(rec.all_ms, 0.5), 1),
        "p99_ms": round(percentile(rec.all_ms, 0.99), 1),
        "stylize_ok_p50_ms": round(percentile(rec.ok_ms, 0.5), 1),
        "stylize_ok_p99_ms": round(percentile(rec.ok_ms, 0.99), 1),
        "5xx_other_than_503": sum(n for c, n in rec.codes.items() if c >= 500 and c != 503),
        "503": rec.codes.get(503, 0), "hangs": rec.hangs,
        "transport_errors": dict(rec.transport_errors), "alive": alive, "healthz": health,
        "peak_rss_mib": round(peak[0] / 1024),
    }


def short_clips() -> dict[str, tuple[bytes, str]]:
    """A few frames each, so jobs end (or are cancelled) while others start: GIF (no audio),
    WebM with Opus (re-encoded to AAC), MP4 with AAC (copied)."""
    from stylebox.videobench import make_clip

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind, name, codec, audio, ctype in [
                ("clip-gif", "c.gif", "gif", None, "image/gif"),
                ("clip-webm", "c.webm", "libvpx-vp9", "libopus", "video/webm"),
                ("clip-mp4", "c.mp4", "libx264", "aac", "video/mp4")]:
            path = make_clip(Path(tmp) / name, 48, 32, 4, 10, codec=codec, audio=audio)
            out[kind] = (path.read_bytes(), ctype)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="stylebox soak", description=__doc__.split("\n")[0])
    p.add_argument("--model", type=Path,
                   help="ONNX model (default: export the tests' tiny model; needs torch)")
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--clients", type=int, default=12)
    p.add_argument("--burst", type=int, default=32, help="concurrent 4K uploads (0: skip)")
    p.add_argument("--max-concurrency", default="2")
    p.add_argument("--max-queue", default="8")
    p.add_argument("--request-timeout-s", default="60")
    args = p.parse_args(argv)
    client_timeout = float(args.request_timeout_s) + 60  # past it, a request "hung"
    tmp = tempfile.TemporaryDirectory()
    model = args.model or export_tiny_model(Path(tmp.name) / "tiny.onnx")
    server = Server(model, {"STYLEBOX_MAX_CONCURRENCY": args.max_concurrency,
                            "STYLEBOX_MAX_QUEUE": args.max_queue,
                            "STYLEBOX_REQUEST_TIMEOUT_S": args.request_timeout_s,
                            "STYLEBOX_VIDEO_DIR": str(Path(tmp.name) / "videos")})
    try:
        server.wait_ready()
        print(f"server pid {server.proc.pid}, idle RSS {rss_kib(server.proc.pid)[0] // 1024} MiB;"
              f" max_concurrency={args.max_concurrency} max_queue={args.max_queue}", flush=True)
        failed = False
        if args.burst:
            b = burst(server, args.burst, client_timeout)
            print("burst:", b, flush=True)
            failed |= bool(b["hangs"] or any(c >= 500 and c != 503 for c in b["codes"]))
        if args.seconds > 0:
            m = mixed(server, args.seconds, args.clients, client_timeout)
            print("mixed:", m, flush=True)
            failed |= bool(m["5xx_other_than_503"] or m["hangs"] or not m["alive"]
                           or m["healthz"] != 200)
    finally:
        server.stop()
        tmp.cleanup()
    print("RESULT:", "FAIL" if failed else "PASS (0 5xx other than 503, 0 hangs, 0 crashes)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

