"""Which HTTP client for the upstream hop: Ironhold's own transport, aiohttp or httpx, measured,
not assumed.

Each client sends N requests with C in flight over pooled keep-alive connections to the same
fixed-response upstream (its own process), and we report requests/s, latency and the client's
CPU per request. The client runs on CPU 0, the upstream on CPU 1.

    python bench/http_clients.py [--requests 20000] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import httpx
import uvloop
from overhead import free_port, pinned, wait_http  # this script's folder is on sys.path

from ironhold.upstream.http import HttpTransport
from ironhold.upstream.transport import Deadlines, UpstreamRequest

BODY = b'{"model":"bench","messages":[{"role":"user","content":"ping"}]}'


async def with_aiohttp(url: str, n: int, c: int) -> list[float]:
    latencies: list[float] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=c)) as session:
        async def worker(count: int) -> None:
            for _ in range(count):
                t = time.perf_counter()
                async with session.post(url, data=BODY,
                                        headers={"Content-Type": "application/json"}) as r:
                    await r.read()
                latencies.append(time.perf_counter() - t)
        await asyncio.gather(*(worker(n // c) for _ in range(c)))
    return latencies


async def with_ironhold(url: str, n: int, c: int) -> list[float]:
    latencies: list[float] = []
    transport = HttpTransport(url.removesuffix("/chat/completions"), max_connections=c)
    request = UpstreamRequest("/chat/completions", BODY, False, Deadlines(5, 30, 30))

    async def worker(count: int) -> None:
        for _ in range(count):
            t = time.perf_counter()
            response = await transport.send(request)
            await response.read()
            latencies.append(time.perf_counter() - t)
    await asyncio.gather(*(worker(n // c) for _ in range(c)))
    await transport.close()
    return latencies


async def with_httpx(url: str, n: int, c: int) -> list[float]:
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=c, max_keepalive_connections=c)
    async with httpx.AsyncClient(limits=limits) as client:
        async def worker(count: int) -> None:
            for _ in range(count):
                t = time.perf_counter()
                r = await client.post(url, content=BODY,
                                      headers={"Content-Type": "application/json"})
                await r.aread()
                latencies.append(time.perf_counter() - t)
        await asyncio.gather(*(worker(n // c) for _ in range(c)))
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    if pinned(0):
        os.sched_setaffinity(0, {0})
    port = free_port()
    upstream = subprocess.Popen([*pinned(1), sys.executable,
                                 str(Path(__file__).parent / "fixed_upstream.py"), str(port)])
    try:
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        wait_http(url.replace("/chat/completions", "/models"))
        print(f"{'client':8} {'version':>8} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
              f"{'CPU µs/req':>10}")
        for name, fn, version in (("ironhold", with_ironhold, "own"),
                                  ("aiohttp", with_aiohttp, aiohttp.__version__),
                                  ("httpx", with_httpx, httpx.__version__)):
            uvloop.run(fn(url, 2000, args.concurrency))  # warm-up
            start, cpu = time.perf_counter(), time.process_time()
            latencies = sorted(uvloop.run(fn(url, args.requests, args.concurrency)))
            used = (time.process_time() - cpu) / len(latencies) * 1e6
            rps = len(latencies) / (time.perf_counter() - start)
            p50 = latencies[len(latencies) // 2] * 1000
            p99 = latencies[int(len(latencies) * 0.99)] * 1000
            print(f"{name:8} {version:>8} {rps:9.0f} {p50:8.2f} {p99:8.2f} {used:10.0f}")
    finally:
        upstream.terminate()
        upstream.wait()


if __name__ == "__main__":
    main()
