"""CPU per request of each trust-stack configuration, in-process: every stage and the router,
through ``gateway.handle``, with an in-memory upstream (``MockTransport``) and no HTTP edge.

    taskset -c 0 python bench/stack_cpu.py [--requests 6400] [--rounds 4] [--concurrency 64]

Without the edge and the network, what the guard and the audit log add stands out from the
noise of a shared machine, so a change to either can be weighed in a minute. Each round builds a
fresh gateway per configuration (its own SQLite state), warms it, then sends ``--requests``
one-word chat requests from ``--concurrency`` tasks; CPU is the process's (the audit log's
commit thread included). The lowest of the rounds is reported: noise only ever adds.
``bench/trust_stack.py`` gives the figures through real HTTP that the targets are judged by.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import uvloop

from ironhold.bootstrap import build_gateway
from ironhold.config.loader import parse_config
from ironhold.core.exchange import Exchange, Operation
from ironhold.core.ids import new_request_id
from ironhold.upstream.mock import MockTransport, chat_answer
from ironhold.upstream.transport import Transport

CONFIGS: dict[str, dict[str, Any]] = {
    "bare": {"audit": {"enabled": False}, "guard": {"enabled": False}},
    "+guard": {"audit": {"enabled": False}},
    "+audit": {"guard": {"enabled": False}},
    "default": {},
}
BODY = b'{"model":"bench","messages":[{"role":"user","content":"ping"}]}'


async def cpu_per_request(sections: dict[str, Any], requests: int, concurrency: int) -> float:
    """Microseconds of CPU per request for one configuration."""
    workdir = Path(tempfile.mkdtemp(prefix="ironhold-stack-cpu-"))
    config = parse_config({
        "state": {"url": f"sqlite:///{workdir / 'state.db'}"},
        "logging": {"level": "warning", "access": False},
        "models": [{"name": "bench", "deployments": [{"url": "http://in-memory"}]}],
        **sections}, source="stack_cpu", base_dir=workdir)
    answer = chat_answer("ok")
    upstreams: list[MockTransport] = []

    def transport(base_url: str, _config: Any) -> Transport:
        upstreams.append(MockTransport(lambda _request: answer))
        return upstreams[-1]

    gateway = build_gateway(config, transport_factory=transport)
    await gateway.start()
    try:
        _, secret = gateway.keys.create("bench")
        body_sha256 = hashlib.sha256(BODY).hexdigest() if gateway.audit is not None else None
        async def client(count: int) -> None:
            for _ in range(count):
                exchange = Exchange(request_id=new_request_id(), operation=Operation.CHAT,
                                    model="bench", body=orjson.loads(BODY), stream=False,
                                    credential=f"Bearer {secret}")
                exchange.body_sha256 = body_sha256  # as the edge sets them (ids: its own)
                reply = await gateway.handle(exchange)
                if reply.status != 200:
                    raise RuntimeError(f"status {reply.status}: {reply.payload()!r}")
                reply.payload()

        await asyncio.gather(*(client(8) for _ in range(concurrency)))  # warm-up
        for upstream in upstreams:  # it keeps what it was sent
            upstream.requests.clear()
            upstream.responses.clear()
        per_client = requests // concurrency
        start = time.process_time()
        await asyncio.gather(*(client(per_client) for _ in range(concurrency)))
        return (time.process_time() - start) / (per_client * concurrency) * 1e6
    finally:
        await gateway.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=6400)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    runs: dict[str, list[float]] = {name: [] for name in CONFIGS}
    for _ in range(args.rounds):
        for name, sections in CONFIGS.items():
            runs[name].append(await cpu_per_request(sections, args.requests, args.concurrency))
    bare = min(runs["bare"])
    print(f"CPU per request, lowest of {args.rounds} rounds of {args.requests} requests "
          f"({args.concurrency} in flight):")
    for name, values in runs.items():
        cpu = min(values)
        print(f"  {name:8} {cpu:7.1f} µs  +{cpu - bare:6.1f} µs over bare  "
              f"({bare / cpu:.0%} of bare's requests/s where CPU-bound)")


if __name__ == "__main__":
    uvloop.install()
    asyncio.run(main())
