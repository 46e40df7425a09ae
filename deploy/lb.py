"""A tiny round-robin TCP proxy for loopback demos and tests where nginx is not installed.

    python deploy/lb.py --listen 8080 127.0.0.1:8001 127.0.0.1:8002

Layer 4, one backend per client connection (the next one in turn; a backend that refuses the
connection is skipped). It stands in for deploy/nginx/nginx.conf on a machine without nginx;
it is not meant for production (no health checks, no retries of a request). On SIGTERM or
SIGINT it prints how many connections each backend got, as JSON, and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import signal
import sys


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1 << 16):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()  # half-close: the other direction may still be sending
    except (ConnectionError, OSError):
        writer.close()


class RoundRobin:
    def __init__(self, backends: list[tuple[str, int]]) -> None:
        self.backends = backends
        self.counts = {f"{h}:{p}": 0 for h, p in backends}
        self._next = itertools.cycle(backends)

    async def handle(self, client_r: asyncio.StreamReader,
                     client_w: asyncio.StreamWriter) -> None:
        for _ in self.backends:  # each backend at most once per connection
            host, port = next(self._next)
            try:
                up_r, up_w = await asyncio.open_connection(host, port)
                break
            except OSError:
                continue
        else:
            client_w.close()
            return
        self.counts[f"{host}:{port}"] += 1
        try:
            await asyncio.gather(_pipe(client_r, up_w), _pipe(up_r, client_w))
        finally:
            for w in (up_w, client_w):
                w.close()


def _backend(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host or "127.0.0.1", int(port)


async def serve(listen: int, backends: list[tuple[str, int]], host: str = "127.0.0.1") -> None:
    rr = RoundRobin(backends)
    server = await asyncio.start_server(rr.handle, host, listen)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"lb: {host}:{listen} -> {', '.join(rr.counts)}", file=sys.stderr, flush=True)
    async with server:
        await stop.wait()
    print(json.dumps(rr.counts), flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--listen", type=int, required=True, help="port on 127.0.0.1")
    p.add_argument("backends", nargs="+", type=_backend, help="HOST:PORT of each replica")
    args = p.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.listen, args.backends))
    return 0


if __name__ == "__main__":
    sys.exit(main())
