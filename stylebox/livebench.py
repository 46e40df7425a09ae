"""`stylebox live-bench`: stylized frames per second and latency of one live camera over the
real WebSocket (WS /live), at each working size.

    stylebox live-bench                                  # starts `stylebox serve` itself
    stylebox live-bench --sizes 640x480,320x240 --seconds 20 --style candy
    stylebox live-bench --url ws://host:8000/live --key "$STYLEBOX_API_KEY"

The client behaves as the web page does: a synthetic moving clip (a drifting gradient with
a square crossing it, JPEG quality 80, as the page's canvas sends), one frame sent and not
yet answered (`--in-flight 1`, the page's rule: the next frame goes the moment the last one
comes back). `--in-flight 2` or 3 sends more while one is being stylized, as a client
pushing at camera rate would: the server drops those (the `dropped` column), never queues
them. Per size it warms up for `--warmup` seconds, then counts for `--seconds`:

    fps          stylized frames received per second
    latency_ms   send of a frame -> its stylized JPEG received (median, p90)
    server_ms    the server's own time per frame: decode, model, encode (median)
    inference_ms the model alone (median)
    dropped      frames the server dropped because one was in flight

One JSON line per size, then a table. Without `--url` it serves `--model` on a free port
with the settings of this environment (STYLEBOX_ENGINE, ...), and reports the engine the
server picked.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import time
from typing import Any

from stylebox.errors import UserError
from stylebox.samples import synthetic_photo
from stylebox.videobench import cpu_model

CLIP_FRAMES = 60  # the clip loops; enough frames that consecutive ones always differ
QUALITY = 80  # what the page's canvas.toBlob sends


def clip_jpegs(width: int, height: int, n: int = CLIP_FRAMES) -> list[bytes]:
    """The synthetic clip, each frame a JPEG as a browser would send it."""
    import io

    from PIL import Image

    out = []
    for i in range(n):
        buf = io.BytesIO()
        rgb = synthetic_photo(width, height, frame=i, square=True)  # video-bench's clips
        Image.fromarray(rgb).save(buf, "JPEG", quality=QUALITY)
        out.append(buf.getvalue())
    return out


def _protocols(key: str | None) -> list[str]:
    from stylebox.service.http.auth import key_protocol

    return ["stylebox.v1"] + ([key_protocol(key)] if key else [])


async def run_size(url: str, width: int, height: int, *, style: str, seconds: float,
                   warmup: float, in_flight: int, key: str | None) -> dict[str, Any]:
    """One session at one size: warm up, then measure."""
    from websockets.asyncio.client import connect

    frames = clip_jpegs(width, height)
    async with connect(url, subprotocols=_protocols(key), max_size=None) as ws:
        hello = json.loads(await ws.recv())
        if hello.get("type") != "hello":
            raise UserError(f"{url} did not greet as stylebox live does: {hello}")
        await ws.send(json.dumps({"style": style}))
        ack = json.loads(await ws.recv())
        if ack.get("type") != "control":
            raise UserError(f"the server refused style {style!r}: "
                            f"{ack.get('problem', {}).get('detail', ack)}")
        sent_at: dict[int, float] = {}
        state = {"sent": 0, "resolved": 0, "errors": 0}
        wake = asyncio.Event()
        t_start = time.perf_counter()
        t_measure = t_start + warmup
        t_end = t_measure + seconds
        rows: list[dict[str, Any]] = []
        first_dropped: int | None = None

        async def sender() -> None:
            while time.perf_counter() < t_end:
                if state["sent"] - state["resolved"] >= in_flight:
                    wake.clear()  # no await since the check: the receiver cannot have set it
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wake.wait(), timeout=1.0)
                    continue
                data = frames[state["sent"] % len(frames)]
                state["sent"] += 1
                sent_at[state["sent"]] = time.perf_counter()
                await ws.send(data)

        async def receiver() -> None:
            nonlocal first_dropped
            while time.perf_counter() < t_end:
                try:
                    message = await asyncio.wait_for(ws.recv(), timeout=max(
                        0.1, t_end - time.perf_counter()))
                except TimeoutError:
                    return
                if isinstance(message, bytes):
                    continue  # the stylized JPEG; its stats came just before
                msg = json.loads(message)
                now = time.perf_counter()
                if msg["type"] == "error":
                    state["errors"] += 1
                    state["resolved"] += 1
                    raise UserError(f"the server refused a frame: {msg['problem']['detail']}")
                if msg["type"] != "frame":
                    continue
                state["resolved"] = msg["stylized"] + msg["dropped"] + state["errors"]
                wake.set()
                if now >= t_measure:
                    if first_dropped is None:
                        first_dropped = msg["dropped"]
                    rows.append({"t": now, "latency": (now - sent_at[msg["seq"]]) * 1000,
                                 "server": msg["server_ms"], "inference": msg["inference_ms"],
                                 "dropped": msg["dropped"], "size": (msg["width"],
                                                                      msg["height"])})
                for seq in [s for s in sent_at if s <= msg["seq"]]:
                    del sent_at[seq]

        await asyncio.gather(sender(), receiver())
    if len(rows) < 2:
        raise UserError(f"fewer than 2 frames came back in {seconds:g} s at {width}x{height}")
    lat = sorted(r["latency"] for r in rows)
    span = rows[-1]["t"] - rows[0]["t"]
    return {
        "size": f"{width}x{height}", "frames": len(rows),
        "fps": round((len(rows) - 1) / span, 2) if span > 0 else None,
        "latency_ms_median": round(statistics.median(lat), 1),
        "latency_ms_p90": round(lat[int(0.9 * (len(lat) - 1))], 1),
        "server_ms_median": round(statistics.median(r["server"] for r in rows), 1),
        "inference_ms_median": round(statistics.median(r["inference"] for r in rows), 1),
        "dropped": rows[-1]["dropped"] - (first_dropped or 0),
        "in_flight": in_flight, "frame_bytes": sum(map(len, frames)) // len(frames),
    }


def _runtime(http_base: str, key: str | None) -> str:
    """The engine and precision serving, from GET /model; "unknown" if it cannot be read.
    The standard library's client: live-bench runs on the runtime install (no httpx)."""
    import http.client
    import urllib.request

    headers = {"X-API-Key": key} if key else {}
    try:
        request = urllib.request.Request(f"{http_base}/model", headers=headers)
        with urllib.request.urlopen(request, timeout=10) as r:
            rt = json.load(r).get("runtime", {})
        return f"{rt.get('engine', '?')} {rt.get('precision', '?')}"
    except (OSError, http.client.HTTPException, ValueError, AttributeError):
        return "unknown"  # unreachable, an error status, or not stylebox's JSON


def main(argv: list[str] | None = None) -> int:
    from stylebox.errors import doc_parser
    from stylebox.service.settings import parse_size

    p: argparse.ArgumentParser = doc_parser("stylebox live-bench", __doc__)
    p.add_argument("--model", default="models/stylebox-a0.25.onnx",
                   help="the model to serve when no --url is given")
    p.add_argument("--url", help="a running server's ws://HOST:PORT/live (else one is started)")
    p.add_argument("--key", default=os.environ.get("STYLEBOX_API_KEY"),
                   help="the API key, when the server needs one (default $STYLEBOX_API_KEY)")
    p.add_argument("--sizes", default="640x480,320x240", help="WxH working sizes, a comma list")
    p.add_argument("--style", default="candy", help="a style or a blend")
    p.add_argument("--seconds", type=float, default=15.0, help="measured seconds per size")
    p.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds first")
    p.add_argument("--in-flight", type=int, default=1, choices=(1, 2, 3),
                   help="frames sent and not yet answered (the page: 1)")
    args = p.parse_args(argv)
    try:
        sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError as e:
        raise UserError(f"--sizes: {e}") from None

    def measure(url: str) -> list[dict[str, Any]]:
        return [asyncio.run(run_size(url, w, h, style=args.style, seconds=args.seconds,
                                     warmup=args.warmup, in_flight=args.in_flight,
                                     key=args.key)) for h, w in sizes]

    if args.url:
        http_base = args.url.replace("ws", "http", 1).rsplit("/live", 1)[0]
        engine = _runtime(http_base, args.key)  # before measuring, as when it serves itself
        results = measure(args.url)
    else:
        from pathlib import Path

        from stylebox.procs import serving

        if not Path(args.model).is_file():
            raise UserError(f"no model at {args.model} (relative to {Path.cwd()}); "
                            "give --model or --url")
        settings = {"STYLEBOX_API_KEY": args.key} if args.key else {}
        with serving(Path(args.model).resolve(), settings, inherit_settings=True) as base:
            engine = _runtime(base, args.key)
            results = measure(base.replace("http", "ws", 1) + "/live")
    cpu = f"{cpu_model()}, {os.cpu_count()} logical cores"
    for r in results:
        print(json.dumps({**r, "engine": engine, "cpu": cpu, "style": args.style}))
    print(f"\n{cpu}; engine {engine}; style {args.style}; {args.in_flight} frame(s) in flight")
    print("| size | stylized FPS | latency median / p90 (ms) | server ms | model ms | dropped |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in results:
        print(f"| {r['size']} | {r['fps']} | {r['latency_ms_median']} / {r['latency_ms_p90']} | "
              f"{r['server_ms_median']} | {r['inference_ms_median']} | {r['dropped']} |")
    return 0
