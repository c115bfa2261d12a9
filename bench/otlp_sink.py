"""An OTLP/HTTP trace receiver that only counts, run as its own process for the benchmarks:
it answers every POST /v1/traces with an empty ExportTraceServiceResponse and, on SIGTERM,
prints the requests and bytes it took as JSON.

    python bench/otlp_sink.py PORT
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys

import uvloop
from aiohttp import web


async def main(port: int) -> None:
    taken = {"posts": 0, "bytes": 0}

    async def traces(request: web.Request) -> web.Response:
        taken["posts"] += 1
        taken["bytes"] += len(await request.read())
        return web.Response(body=b"", content_type="application/x-protobuf")

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/traces", traces)
    async def ready(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app.router.add_get("/", ready)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    stopped = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopped.set)
    await stopped.wait()
    await runner.cleanup()
    print(json.dumps(taken), flush=True)


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1])))
