"""The load generator, run as its own process.

Open loop (``--rate``): requests are sent on a fixed schedule whatever the answers do, and each
latency is measured from its scheduled send time, so a stalled server cannot hide its queue
(no coordinated omission). Closed loop (``--concurrency``): that many requests in flight at all
times, for the maximum requests per second.

Prints one JSON object: sent, ok, errors, rps, and latency percentiles in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import aiohttp
import orjson
import uvloop

BODY = orjson.dumps({"model": "bench", "messages": [{"role": "user", "content": "ping"}],
                     "max_tokens": 1})
STREAM_BODY = orjson.dumps({"model": "bench", "stream": True, "max_tokens": 8,
                            "messages": [{"role": "user", "content": "ping"}]})


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)

    return {"p50_ms": at(0.50), "p90_ms": at(0.90), "p99_ms": at(0.99), "p999_ms": at(0.999),
            "max_ms": round(ordered[-1] * 1000, 3)}


async def run(url: str, key: str, rate: float, concurrency: int, seconds: float,
              stream: bool = False, extra: dict[str, str] | None = None
              ) -> dict:  # type: ignore[type-arg]
    body = STREAM_BODY if stream else BODY
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json",
               **(extra or {})}
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(scheduled: float) -> None:
            nonlocal errors
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    if response.status != 200:
                        errors += 1
                        return
            except (aiohttp.ClientError, TimeoutError):
                errors += 1
                return
            latencies.append(time.perf_counter() - scheduled)

        start = time.perf_counter()
        if rate > 0:
            tasks = []
            interval = 1.0 / rate
            n = int(rate * seconds)
            for i in range(n):
                scheduled = start + i * interval
                delay = scheduled - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one(scheduled)))
            await asyncio.gather(*tasks)
            sent = n
        else:
            sent = 0
            deadline = start + seconds

            async def worker() -> None:
                nonlocal sent
                while time.perf_counter() < deadline:
                    sent += 1
                    await one(time.perf_counter())

            await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return {"sent": sent, "ok": len(latencies), "errors": errors,
            "rps": round(len(latencies) / elapsed, 1), **percentiles(latencies)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--key", default="none")
    parser.add_argument("--rate", type=float, default=0.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--stream", action="store_true",
                        help="streamed chat completions (read to the end)")
    parser.add_argument("--header", action="append", default=[], metavar="NAME:VALUE",
                        help="an extra request header (a peer gateway's routing headers)")
    args = parser.parse_args()
    extra = dict(h.split(":", 1) for h in args.header)
    result = uvloop.run(run(args.url, args.key, args.rate, args.concurrency, args.seconds,
                                 args.stream, extra))
    print(orjson.dumps(result).decode())


if __name__ == "__main__":
    main()
