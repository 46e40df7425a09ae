"""N `stylebox serve` replicas behind a proxy on loopback, and their /stylize throughput.

    python deploy/replicas.py --model models/stylebox-a0.25.onnx --replicas 2

Starts N processes on free ports, then the proxy: nginx with deploy/nginx/nginx.conf (its
upstream servers and listen port replaced) when nginx is installed, else deploy/lb.py. It
sends --requests POST /stylize requests (a --size square PNG, --concurrency at once) through
the proxy and prints one JSON line: requests/s, latency percentiles and how many requests
(nginx) or connections (lb.py) each replica served. This is the local stand-in for
`docker compose --profile scale up --scale replica=N proxy` (README "Deployment").
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from stylebox.procs import free_port, service_env, stop, wait_ready

HERE = Path(__file__).resolve().parent
NGINX_CONF = HERE / "nginx" / "nginx.conf"


def loopback_nginx_conf(ports: list[int], listen: int, tmp: Path) -> str:
    """deploy/nginx/nginx.conf with loopback upstreams, port and temp dirs (runs unprivileged)."""
    text = NGINX_CONF.read_text()
    servers = "".join(f"        server 127.0.0.1:{p} max_fails=3 fail_timeout=10s;\n"
                      for p in ports)
    text, n = re.subn(r"(?m)^ *server replica:8000[^\n]*\n", servers, text)
    text, m = re.subn(r"(?m)^( *)listen 8080;", rf"\1listen 127.0.0.1:{listen};", text)
    assert n == 1 and m == 1, "deploy/nginx/nginx.conf no longer has the expected lines"
    temps = "".join(f"    {k}_temp_path {tmp / k};\n" for k in ("client_body", "proxy"))
    return text.replace("http {\n", "http {\n" + temps, 1)


def test_png(size: int) -> bytes:
    yy, xx = np.mgrid[0:size, 0:size]
    rgb = np.stack([xx * 255 // size, yy * 255 // size, (xx + yy) * 127 // size], -1)
    buf = io.BytesIO()
    Image.fromarray(rgb.astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


async def load(base: str, body: bytes, requests: int, concurrency: int,
               style: str) -> dict:
    """POST /stylize `requests` times, `concurrency` at once; throughput and latencies."""
    lat: list[float] = []
    upstreams: Counter[str] = Counter()
    todo = iter(range(requests))
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:

        async def worker() -> None:
            for _ in todo:
                t0 = time.perf_counter()
                r = await client.post(f"/stylize?style={style}", content=body,
                                      headers={"Content-Type": "image/png"})
                lat.append(time.perf_counter() - t0)
                if r.status_code != 200:
                    raise RuntimeError(f"/stylize answered {r.status_code}: {r.text[:300]}")
                upstreams[r.headers.get("x-stylebox-upstream", "?")] += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    lat.sort()
    return {"requests": requests, "wall_s": round(wall, 2), "req_per_s": round(requests / wall, 2),
            "p50_ms": round(1000 * statistics.median(lat), 1),
            "p90_ms": round(1000 * lat[int(0.9 * (len(lat) - 1))], 1),
            "per_upstream": dict(upstreams)}


def run(model: str, replicas: int, proxy: str = "auto", requests: int = 60,
        concurrency: int = 4, size: int = 256, threads: int = 0, style: str = "") -> dict:
    """Start everything, measure, stop everything; the result as a dict."""
    if proxy == "auto":
        proxy = "nginx" if shutil.which("nginx") else "lb"
    ports = [free_port() for _ in range(replicas)]
    listen = free_port()
    env = service_env({"STYLEBOX_MODEL_PATH": model, "STYLEBOX_INTRA_OP_THREADS": str(threads)})
    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        stack.callback(lambda: stop(*procs))
        for port in ports:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "stylebox", "serve", "--host", "127.0.0.1",
                 "--port", str(port), "--log-level", "warning"],
                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        for port in ports:
            wait_ready(f"http://127.0.0.1:{port}/readyz", procs)
        if proxy == "nginx":
            conf = Path(tmp) / "nginx.conf"
            conf.write_text(loopback_nginx_conf(ports, listen, Path(tmp)))
            cmd = ["nginx", "-p", tmp, "-c", str(conf),
                   "-g", f"daemon off; pid {tmp}/nginx.pid; error_log stderr;"]
        else:
            cmd = [sys.executable, str(HERE / "lb.py"), "--listen", str(listen),
                   *(f"127.0.0.1:{p}" for p in ports)]
        lb = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        procs.insert(0, lb)  # stopped first, so lb.py prints its counts before replicas go
        base = f"http://127.0.0.1:{listen}"
        wait_ready(f"{base}/readyz", [lb], timeout_s=30)
        styles = httpx.get(f"{base}/styles", timeout=10).json()["styles"]
        style = style or styles[0]["name"]
        body = test_png(size)
        asyncio.run(load(base, body, 2 * replicas, replicas, style))  # warm every replica
        result = asyncio.run(load(base, body, requests, concurrency, style))
        stop(lb)
        if proxy == "lb":  # lb.py's last stdout line: connections per backend
            last = [ln for ln in lb.stdout.read().splitlines() if ln.startswith("{")]
            result["per_upstream"] = json.loads(last[-1]) if last else {}
    return {"replicas": replicas, "proxy": proxy, "intra_op_threads": threads, "size": size,
            "concurrency": concurrency, "cpus": os.cpu_count(), **result}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="ONNX model every replica serves")
    p.add_argument("--replicas", type=int, default=2)
    p.add_argument("--proxy", choices=["auto", "nginx", "lb"], default="auto")
    p.add_argument("--requests", type=int, default=60)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--size", type=int, default=256, help="side of the square test image")
    p.add_argument("--threads", type=int, default=0,
                   help="STYLEBOX_INTRA_OP_THREADS per replica (0 = ORT's default)")
    args = p.parse_args(argv)
    print(json.dumps(run(args.model, args.replicas, args.proxy, args.requests,
                         args.concurrency, args.size, args.threads)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
