"""The cost of admitting one request against limits: in-process and in Redis (one round trip
to admit, one to settle), with a key, a passport and a tenant counter.

    taskset -c 0 python bench/limits.py [--n 20000] [--redis redis://127.0.0.1:6379/13]
"""

from __future__ import annotations

import argparse
import time
import uuid

import uvloop

from ironhold.core.principal import Quota
from ironhold.limits.redis_store import RedisLimitStore
from ironhold.limits.store import Ask, Charge, LimitStore, MemoryLimitStore


async def run(store: LimitStore, n: int) -> list[float]:
    tag = uuid.uuid4().hex[:8]
    charges = [Charge(f"bench-key-{tag}", Quota(rpm=10**9, tpm=10**12, concurrency=10**6)),
               Charge(f"bench-pp-{tag}", Quota(rpm=10**9, budget_usd_daily=10**6)),
               Charge(f"bench-tenant-{tag}", Quota(rpm=10**9, tpm=10**12))]
    samples = []
    for i in range(n):
        now = time.time()
        t = time.perf_counter()
        await store.admit(charges, Ask(str(i), 300, 500, now))
        await store.settle(charges, str(i), now, -100, -100, now)
        samples.append(time.perf_counter() - t)
    samples.sort()
    return samples


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/13")
    args = parser.parse_args()
    stores: list[tuple[str, LimitStore]] = [("in-process", MemoryLimitStore()),
                                            ("redis", RedisLimitStore(args.redis))]
    for name, store in stores:
        samples = await run(store, args.n)
        await store.close()

        def pct(p: float, s: list[float] = samples) -> float:
            return s[min(len(s) - 1, int(len(s) * p))] * 1e6

        print(f"{name:10s} admit+settle, 3 counters: p50 {pct(0.5):7.1f} us  "
              f"p99 {pct(0.99):7.1f} us  ({len(samples) / sum(samples):,.0f} per second, "
              "one at a time)")


if __name__ == "__main__":
    uvloop.run(main())
