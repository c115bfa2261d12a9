"""Micro-timings of the router's per-request pieces, in isolation, on one core:

    taskset -c 0 python bench/router_parts.py
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import uvloop

from ironhold.bootstrap import build_gateway
from ironhold.config import parse_config
from ironhold.core.exchange import Exchange, Operation
from ironhold.routing.attempt import Attempt

BODY = (b'{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"bench","choices":'
        b'[{"index":0,"message":{"role":"assistant","content":"pong"},"finish_reason":"stop"}],'
        b'"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}')


def timed(name: str, fn: Callable[[], object], n: int = 50_000) -> None:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    print(f"{name:30s} {(time.perf_counter() - start) / n * 1e6:6.2f} us")


def main() -> None:
    tmp = Path(tempfile.mkdtemp())
    config = parse_config({"state": {"url": f"sqlite:///{tmp}/s.db"},
                           "logging": {"access": False},
                           "models": [{"name": "bench", "deployments": [
                               {"url": "http://127.0.0.1:9/v1"}]}]}, base_dir=tmp)
    gateway = build_gateway(config)
    router = gateway.router
    group = router.groups["bench"]
    d = group.deployments[0]
    exchange = Exchange(request_id="x", operation=Operation.CHAT, model="bench",
                        body={"model": "bench", "messages": [{"role": "user", "content": "hi"}]},
                        stream=False)

    def release() -> None:
        d.outstanding = 1
        group.released(d)

    timed("pick a deployment", lambda: group.pick([], [], exchange.body))
    attempt = Attempt(group, d)
    timed("build the upstream request",
          lambda: router._request(exchange, attempt, attempt.started + 600))
    timed("decode the answer (once, for all stages)", lambda: orjson.loads(BODY))
    timed("peak-EWMA observe", lambda: d.latency.observe(0.01, time.monotonic()))
    timed("latency window add", lambda: d.recent.add(0.01))
    timed("outlier success", lambda: group.outlier.success(d))
    timed("retry budget on_request", group.budget.on_request)
    timed("release a deployment", release)
    timed("attempt metric", lambda: gateway.metrics.upstream_attempt("bench", d.name, "200"))

    async def trivial() -> None:
        return None

    async def awaits() -> None:
        start = time.perf_counter()
        for _ in range(50_000):
            await trivial()
        print(f"{'await a trivial coroutine':30s} "
              f"{(time.perf_counter() - start) / 50_000 * 1e6:6.2f} us")

    uvloop.run(awaits())
    gateway.store.close()


if __name__ == "__main__":
    main()
