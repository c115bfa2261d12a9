"""What the MCP tool gateway adds to a tool call: ``tools/call`` of a trivial tool (``echo``)
straight to the tool server, and through Ironhold's ``/mcp`` with everything on (an API key,
Cedar policy with an argument condition, limits, the guard on arguments and results, the audit
log with fsync), side by side in one run.

    python bench/mcp_overhead.py [--calls 2000] [--block 50] [--bare] [--sdk] [--one-core]
                                 [--base REV]

Layout on a 2-core machine: Ironhold on CPU 0; the tool server (the official SDK's server) and
this client on CPU 1. Both paths use the same client, one call at a time, in alternating blocks
so they share conditions: a bare JSON-RPC client by default, the official SDK's with ``--sdk``.
Besides latency, the CPU each call costs Ironhold and the tool server (from /proc), which a
VM's slow-to-wake idle cores do not blur. Target (issue #21): at most 2 ms added at p50.
Results go to stdout and to bench/results/mcp_overhead*.json.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import httpx2
import orjson
from mcp.client.streamable_http import streamable_http_client
from overhead import HERE, PY, free_port, machine, pinned, progress, save, stop, wait_http

from mcp import Client

ROOT = HERE.parent
#: Calls that failed, by path (measured calls only).
FAILED: dict[str, int] = {}

POLICY = """
@id("echo-short-texts")
permit(principal, action == Ironhold::Action::"call_tool", resource == Ironhold::Tool::"files.echo")
when { context.arguments.hasTag("text") && context.arguments.getTag("text").kind == "string" };
"""


def start_tools(workdir: Path, cpu: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen([*pinned(cpu), PY, "-m", "ironhold.simulator.tools", "--root",
                                str(workdir / "shared"), "--http", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_http(f"http://127.0.0.1:{port}/mcp")
    return process, f"http://127.0.0.1:{port}/mcp"


#: The trust stack on (the target's case), and off: what the hop itself costs.
FULL = """
policy: {files: [policy.cedar]}
audit: {enabled: true, fsync: true}
"""
BARE = """
audit: {enabled: false}
guard: {enabled: false}
"""


def start_gateway(workdir: Path, tools_url: str, stack: str, cpu: int, src: Path | None = None
                  ) -> tuple[subprocess.Popen[bytes], str, str]:
    """A gateway in ``workdir``: this checkout's, or the one whose sources are at ``src``."""
    workdir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(src)} if src is not None else None
    port = free_port()
    (workdir / "policy.cedar").write_text(POLICY)
    config = workdir / "ironhold.yaml"
    config.write_text(f"""
server: {{host: 127.0.0.1, port: {port}}}
state: {{url: "sqlite:///./state.db"}}
logging: {{level: warning, access: false}}
{stack}
mcp:
  limits: {{rpm: 1000000, concurrency: 64}}
  servers: [{{name: files, url: "{tools_url}"}}]
""")
    # Without a policy, a key reaches only the tools its scope names.
    key = json.loads(subprocess.run(
        [PY, "-m", "ironhold", "keys", "create", "-c", str(config), "--name", "bench", "--json",
         "--tools", "files.echo"],
        capture_output=True, text=True, check=True, cwd=workdir, env=env).stdout)["key"]
    log = (workdir / "ironhold.log").open("wb")
    profile = os.environ.get("BENCH_PROFILE")  # a cProfile output file for the gateway
    profiler = ["-m", "cProfile", "-o", profile] if profile else []
    process = subprocess.Popen([*pinned(cpu), PY, *profiler, "-m", "ironhold", "serve", "-c",
                                str(config)], stdout=log, stderr=log, cwd=workdir, env=env)
    wait_http(f"http://127.0.0.1:{port}/healthz")
    return process, f"http://127.0.0.1:{port}/mcp", key


class RawClient:
    """A bare JSON-RPC client on aiohttp: one session, one ``tools/call`` at a time. The same
    client on both paths, so the difference is what the gateway adds."""

    def __init__(self, http: aiohttp.ClientSession, url: str, headers: dict[str, str]):
        self._http, self._url = http, url
        self._headers = {"Accept": "application/json, text/event-stream",
                         "Content-Type": "application/json", **headers}
        self._ids = itertools.count(1)

    async def open(self) -> RawClient:
        answer = await self._post({"method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "bench", "version": "1"}}}, session=True)
        assert "result" in answer, answer
        self._headers["MCP-Protocol-Version"] = "2025-11-25"
        async with self._http.post(self._url, headers=self._headers, data=orjson.dumps(
                {"jsonrpc": "2.0", "method": "notifications/initialized"})) as response:
            await response.read()
        return self

    async def call(self, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
        answer = await self._post({"method": "tools/call",
                                   "params": {"name": tool, "arguments": arguments}})
        assert "result" in answer and not answer["result"].get("isError"), answer
        return answer

    async def _post(self, message: dict[str, Any], session: bool = False) -> dict[str, Any]:
        body = orjson.dumps({"jsonrpc": "2.0", "id": next(self._ids), **message})
        async with self._http.post(self._url, headers=self._headers, data=body) as response:
            if session and "Mcp-Session-Id" in response.headers:
                self._headers["Mcp-Session-Id"] = response.headers["Mcp-Session-Id"]
            raw = await response.read()
        if response.content_type == "text/event-stream":  # the SDK's server answers in SSE
            raw = next(line[5:] for line in raw.splitlines() if line.startswith(b"data:"))
        answer: dict[str, Any] = orjson.loads(raw)
        return answer


async def measure(direct_url: str, gateway_url: str, key: str, calls: int, block: int,
                  sdk: bool, base: tuple[str, str] | None = None) -> dict[str, list[float]]:
    if sdk:
        return await measure_sdk(direct_url, gateway_url, key, calls, block)
    async with aiohttp.ClientSession() as http:
        direct = await RawClient(http, direct_url, {}).open()
        gateway = await RawClient(http, gateway_url, {"Authorization": f"Bearer {key}"}).open()
        paths: dict[str, Callable[[], Awaitable[Any]]] = {
            "direct": lambda: direct.call("echo", {"text": "hello"}),
                 "ironhold": lambda: gateway.call("files.echo", {"text": "hello"})}
        if base is not None:  # the base revision's gateway, in the same rotation
            before = await RawClient(http, base[0], {"Authorization": f"Bearer {base[1]}"}).open()
            paths["base"] = lambda: before.call("files.echo", {"text": "hello"})
        return await alternate(paths, calls, block)


async def measure_sdk(direct_url: str, gateway_url: str, key: str, calls: int,
                      block: int) -> dict[str, list[float]]:
    direct_http = httpx2.AsyncClient(timeout=30)
    gateway_http = httpx2.AsyncClient(timeout=30, headers={"Authorization": f"Bearer {key}"})
    async with direct_http, gateway_http, \
            Client(streamable_http_client(direct_url, http_client=direct_http),
                   cache=None) as direct, \
            Client(streamable_http_client(gateway_url, http_client=gateway_http),
                   cache=None) as gateway:
        return await alternate({
            "direct": lambda: direct.call_tool("echo", {"text": "hello"}),
            "ironhold": lambda: gateway.call_tool("files.echo", {"text": "hello"}),
        }, calls, block)


async def alternate(paths: dict[str, Callable[[], Awaitable[Any]]], calls: int,
                    block: int) -> dict[str, list[float]]:
    """Each path's latencies (ms), measured in alternating blocks after a warm-up."""
    times: dict[str, list[float]] = {name: [] for name in paths}
    failed = FAILED
    for call in paths.values():  # warm up: connections, caches, the classifier
        for _ in range(100):
            await call()
    done = 0
    while done < calls:
        for name, call in paths.items():
            for _ in range(block):
                started = time.perf_counter()
                try:
                    await call()
                except AssertionError as exc:  # counted, and said, not timed
                    failed[name] = failed.get(name, 0) + 1
                    progress(f"{name}: a call failed: {str(exc)[:300]}")
                    continue
                times[name].append((time.perf_counter() - started) * 1000)
        done += block
        if done % (block * 10) == 0:
            progress(f"{done}/{calls} calls on each path")
    return times


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)

    return {"p50_ms": at(0.50), "p90_ms": at(0.90), "p99_ms": at(0.99),
            "mean_ms": round(statistics.fmean(ordered), 3), "calls": len(ordered)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--block", type=int, default=50)
    parser.add_argument("--sdk", action="store_true",
                        help="Call with the official mcp SDK's client instead of a bare "
                             "JSON-RPC one (the SDK's own cost then differs by server).")
    parser.add_argument("--one-core", action="store_true",
                        help="Everything on CPU 1: no call crosses cores (on a VM, waking an "
                             "idle vCPU costs more than the work of a small call).")
    parser.add_argument("--bare", action="store_true",
                        help="Policy, guard and audit off: what the extra hop alone costs.")
    parser.add_argument("--base", metavar="REV",
                        help="Also run this git revision's gateway (from a temporary worktree, "
                             "on the same core), its calls in the same rotation: before and "
                             "after in one run.")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {1})  # the client beside the tool server, off Ironhold's core
    stack, core = BARE if args.bare else FULL, 1 if args.one_core else 0
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        tools, tools_url = start_tools(workdir, 1)
        gateway, gateway_url, key = start_gateway(workdir, tools_url, stack, core)
        base: tuple[subprocess.Popen[bytes], str, str] | None = None
        if args.base:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach",
                            str(workdir / "base-src"), args.base], check=True,
                           capture_output=True)
            base = start_gateway(workdir / "base", tools_url, stack, core,
                                 workdir / "base-src" / "src")
        try:
            progress("measuring tools/call of echo, direct and through Ironhold")
            cpu = cpu_seconds(gateway.pid), cpu_seconds(tools.pid)
            times = asyncio.run(measure(tools_url, gateway_url, key, args.calls, args.block,
                                        args.sdk, base[1:] if base else None))
            # Warm-up included: 100 more calls through each path than measured.
            through = args.calls + 100
            gateway_cpu = (cpu_seconds(gateway.pid) - cpu[0]) / through * 1000
            tools_cpu = (cpu_seconds(tools.pid) - cpu[1]) / (len(times) * through) * 1000
        finally:
            stop(gateway)
            stop(tools)
            if base is not None:
                stop(base[0])
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                                str(workdir / "base-src")], check=False, capture_output=True)
    direct, ironhold = summary(times["direct"]), summary(times["ironhold"])
    results = {
        "machine": machine(),
        "direct": direct,
        "ironhold": ironhold,
        "stack": "bare" if args.bare else "policy, limits, guard, audit (fsync)",
        "client": "mcp SDK" if args.sdk else "bare JSON-RPC (aiohttp)",
        "layout": "all on CPU 1" if args.one_core else
                  "Ironhold on CPU 0; tool server and client on CPU 1",
        "added_p50_ms": round(ironhold["p50_ms"] - direct["p50_ms"], 3),
        "added_p99_ms": round(ironhold["p99_ms"] - direct["p99_ms"], 3),
        # What the latencies cannot show on a VM whose idle vCPUs are slow to wake: the CPU
        # each call costs.
        "ironhold_cpu_ms_per_call": round(gateway_cpu, 3),
        "tool_server_cpu_ms_per_call": round(tools_cpu, 3),
        "target_added_p50_ms": 2.0,
        "failed_calls": {"ironhold": FAILED.get("ironhold", 0), "direct": FAILED.get("direct", 0)},
    }
    if "base" in times:
        before = summary(times["base"])
        results["base"] = {"revision": args.base, **before,
                           "added_p50_ms": round(before["p50_ms"] - direct["p50_ms"], 3),
                           "failed_calls": FAILED.get("base", 0)}
    print(json.dumps(results, indent=2))
    save(results, "mcp_overhead" + ("_bare" if args.bare else "") + ("_sdk" if args.sdk else "")
         + ("_one_core" if args.one_core else "") + ("_before_after" if args.base else ""))


if __name__ == "__main__":
    main()
