"""Which server for the HTTP edge: aiohttp's, or uvicorn (httptools, uvloop) with Starlette.

Each candidate serves one route that does what the gateway's edge must at least do: read the
JSON body, parse it with orjson, forward it with the same pooled aiohttp client to the
fixed-response upstream, and return the upstream's body. Nothing else of Ironhold runs, so the
difference is the server framework. Server on CPU 0, upstream and load generator on CPU 1.

    python bench/edge_servers.py [--seconds 8]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from overhead import free_port, load, pinned, wait_http  # this script's folder is on sys.path

HERE = Path(__file__).resolve().parent

_APP = r'''
import sys, aiohttp, orjson, uvloop
kind, port, upstream = sys.argv[1], int(sys.argv[2]), sys.argv[3]
session = None

async def forward(raw):
    global session
    if session is None:
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))
    body = orjson.loads(raw)
    async with session.post(upstream, data=orjson.dumps(body),
                            headers={"Content-Type": "application/json"}) as r:
        return await r.read()

if kind == "aiohttp":
    from aiohttp import web
    async def handle(request):
        return web.Response(body=await forward(await request.read()),
                            content_type="application/json")
    app = web.Application()
    app.router.add_post("/v1/chat/completions", handle)
    app.router.add_get("/ready", lambda r: web.Response(text="ok"))
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None,
                loop=uvloop.new_event_loop())
else:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import Response, PlainTextResponse
    from starlette.routing import Route
    async def handle(request):
        return Response(await forward(await request.body()), media_type="application/json")
    async def ready(request):
        return PlainTextResponse("ok")
    app = Starlette(routes=[Route("/v1/chat/completions", handle, methods=["POST"]),
                            Route("/ready", ready)])
    uvicorn.run(app, host="127.0.0.1", port=port, loop="uvloop", http="httptools",
                access_log=False, log_level="warning")
'''


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8)
    args = parser.parse_args()
    up_port = free_port()
    upstream = subprocess.Popen([*pinned(1), sys.executable, str(HERE / "fixed_upstream.py"),
                                 str(up_port)])
    results = {}
    try:
        for kind in ("aiohttp", "uvicorn+starlette"):
            port = free_port()
            server = subprocess.Popen([*pinned(0), sys.executable, "-c", _APP, kind.split("+")[0],
                                       str(port),
                                       f"http://127.0.0.1:{up_port}/v1/chat/completions"])
            try:
                wait_http(f"http://127.0.0.1:{port}/ready")
                url = f"http://127.0.0.1:{port}/v1/chat/completions"
                load(url, "none", rate=500, seconds=2)
                results[kind] = {"max": load(url, "none", seconds=args.seconds),
                                 "at_1000": load(url, "none", rate=1000, seconds=args.seconds)}
            finally:
                server.terminate()
                server.wait()
    finally:
        upstream.terminate()
        upstream.wait()
    print(f"{'server':20} {'max req/s':>10} {'p50@1000/s':>11} {'p99@1000/s':>11}")
    for kind, r in results.items():
        print(f"{kind:20} {r['max']['rps']:10.0f} {r['at_1000']['p50_ms']:9.3f}ms "
              f"{r['at_1000']['p99_ms']:9.3f}ms")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
