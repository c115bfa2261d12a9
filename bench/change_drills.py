"""Drills for changing a running gateway (issue #19), each against a real ``ironhold serve``
in front of real ``ironhold simulate`` processes, under steady load from 16 clients (a third of
them streaming):

    reload    20 reloads through POST /admin/config (what ``ironhold config apply`` calls),
              deployments added, removed and re-weighted. Targets: zero client errors, zero
              lost audit records, reload p99 under 200 ms.
    rollout   a candidate with 10% errors rolled out (steps 5/25/50/100, hold 30 s): rolled
              back within one hold of taking traffic, client errors under 0.5% of requests;
              then a healthy candidate promoted to 100%.
    shadow    the client's p99 with no shadow and with a 10x slower shadow copying every
              request, alternating; target: under 5% apart.

    python bench/change_drills.py reload|rollout|shadow|all

Results go to stdout and to bench/results/change_drills_<drill>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from overhead import PY, free_port, machine, pinned, progress, save, stop, wait_http

CLIENTS = 16
STREAMING = CLIENTS // 3


def simulator(workdir: Path, name: str, profile: dict[str, Any]) -> tuple[
        subprocess.Popen[bytes], str]:
    port = free_port()
    path = workdir / f"{name}.json"
    path.write_text(json.dumps(profile))
    process = subprocess.Popen([*pinned(1), PY, "-m", "ironhold", "simulate", "--port",
                                str(port), "--profile", str(path)], stderr=subprocess.DEVNULL)
    wait_http(f"http://127.0.0.1:{port}/v1/models")
    return process, f"http://127.0.0.1:{port}/v1"


def fast(**extra: Any) -> dict[str, Any]:
    return {"ttft": {"distribution": "lognormal", "median_ms": 20, "sigma": 0.3},
            "token_latency": {"ms": 3}, "completion_tokens": 8, **extra}


class Gateway:
    """``ironhold serve`` on CPU 0, an admin key, and its config file."""

    def __init__(self, workdir: Path, config: str):
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.path = workdir / "gateway.yaml"
        self.write(config)
        self.key = json.loads(subprocess.run(
            [PY, "-m", "ironhold", "keys", "create", "-c", str(self.path), "--name", "drill",
             "--admin", "--json"], capture_output=True, text=True, check=True).stdout)["key"]
        self.log = (workdir / "ironhold.log").open("wb")
        self.process = subprocess.Popen([*pinned(0), PY, "-m", "ironhold", "serve", "-c",
                                         str(self.path)], stdout=self.log, stderr=self.log)
        wait_http(self.base + "/readyz")

    def text(self, body: str) -> str:
        return (f"server: {{host: 127.0.0.1, port: {self.port}}}\n"
                f'state: {{url: "sqlite:///./state/ironhold.db"}}\n{body}')

    def write(self, body: str) -> None:
        self.path.write_text(self.text(body))

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def admin(self, method: str, path: str, **kwargs: Any) -> Any:
        answer = httpx.request(method, self.base + path, timeout=60,
                               headers={"Authorization": f"Bearer {self.key}"}, **kwargs)
        answer.raise_for_status()
        return answer.json()

    def apply(self, body: str) -> tuple[float, float]:
        """Apply a config through the admin API: (the gateway's reload_ms, the call's ms)."""
        started = time.perf_counter()
        done = self.admin("POST", "/admin/config",
                          json={"config": self.text(body), "source": "drill.yaml"})
        return done["reload_ms"], (time.perf_counter() - started) * 1000

    def close(self) -> None:
        stop(self.process)
        self.log.close()


class Load:
    """``CLIENTS`` closed-loop clients, a third streaming, each as a session of its own."""

    def __init__(self, url: str, key: str, model: str = "chat"):
        self.url, self.key, self.model = url, key, model
        self.sent = self.ok = 0
        self.errors: dict[str, int] = {}
        self.latencies: list[float] = []
        self.stopping = False
        self._session = 0

    async def run(self, seconds: float | None = None) -> None:
        deadline = None if seconds is None else time.perf_counter() + seconds
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector,
                                         timeout=aiohttp.ClientTimeout(total=30)) as session:
            await asyncio.gather(*(self._client(session, i < STREAMING, deadline)
                                   for i in range(CLIENTS)))

    async def _client(self, session: aiohttp.ClientSession, stream: bool,
                      deadline: float | None) -> None:
        headers = {"Authorization": f"Bearer {self.key}"}
        while not self.stopping and (deadline is None or time.perf_counter() < deadline):
            self._session += 1
            body = {"model": self.model, "stream": stream, "user": f"s{self._session}",
                    "messages": [{"role": "user", "content": "hello there"}]}
            started = time.perf_counter()
            self.sent += 1
            try:
                async with session.post(self.url, json=body, headers=headers) as response:
                    data = await response.read()
                    failed = response.status != 200 or (stream and (
                        b"[DONE]" not in data or b'"error"' in data))
                    if failed:
                        self._error(str(response.status) if response.status != 200
                                    else "stream_error")
                        continue
            except (aiohttp.ClientError, TimeoutError) as exc:
                self._error(type(exc).__name__)
                continue
            self.ok += 1
            self.latencies.append(time.perf_counter() - started)

    def _error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def models(urls: list[str], weights: list[float] | None = None, extra: str = "") -> str:
    weights = weights or [1.0] * len(urls)
    items = ", ".join(f'{{name: d{i}, url: "{u}", weight: {w}}}'
                      for i, (u, w) in enumerate(zip(urls, weights, strict=True)))
    return f"models:\n  - name: chat\n    deployments: [{items}]\n{extra}"


def reload_drill() -> dict[str, Any]:
    sims: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="ironhold-reload-") as tmp:
        work = Path(tmp)
        urls = []
        for i in range(4):
            process, url = simulator(work, f"sim{i}", fast())
            sims.append(process)
            urls.append(url)
        audit = "audit: {enabled: true}\n"
        gw = Gateway(work / "gw", audit + models(urls[:2]))
        # Added, re-weighted, removed, in turn: every change a reload may meet.
        plans = [(urls[:3], [1, 1, 1]), (urls[:3], [3, 1, 1]), (urls[1:3], [1, 2]),
                 (urls[1:4], [1, 1, 1]), (urls[:2], [1, 1])]
        reloads: list[tuple[float, float]] = []
        load = Load(gw.base + "/v1/chat/completions", gw.key)
        try:
            async def drill() -> None:
                running = asyncio.create_task(load.run())
                await asyncio.sleep(3)
                for n in range(20):
                    chosen, weights = plans[n % len(plans)]
                    reloads.append(await asyncio.to_thread(
                        gw.apply, audit + models(chosen, [float(w) for w in weights])))
                    await asyncio.sleep(1.5)
                await asyncio.sleep(2)
                load.stopping = True
                await running

            progress(f"{CLIENTS} clients ({STREAMING} streaming), 20 reloads 1.5 s apart")
            asyncio.run(drill())
        finally:
            gw.close()
            for process in sims:
                stop(process)
        with sqlite3.connect(work / "gw" / "state" / "ironhold.db") as db:
            records = [json.loads(r[0]) for r in db.execute(
                "SELECT record FROM ironhold_audit_records ORDER BY seq")]
        verified = subprocess.run([PY, "-m", "ironhold", "audit", "verify", "-c", str(gw.path)],
                                  capture_output=True, text=True)
    requests = [r for r in records if r["kind"] == "request"]
    applied = [r for r in records if r["kind"] == "change" and r["outcome"] == "applied"]
    gateway_ms = [r[0] for r in reloads]
    call_ms = [r[1] for r in reloads]
    return {
        "drill": "reload", "machine": machine(), "clients": CLIENTS, "streaming": STREAMING,
        "reloads": len(reloads), "reloads_audited": len(applied),
        "requests": load.sent, "answered": load.ok, "client_errors": load.errors,
        "audit_request_records": len(requests),
        "lost_audit_records": load.sent - len(requests),
        "audit_verify_exit": verified.returncode,
        "reload_ms": {"p50": percentile(gateway_ms, 0.5), "p99": percentile(gateway_ms, 0.99),
                      "max": max(gateway_ms)},
        "apply_call_ms": {"p50": round(percentile(call_ms, 0.5), 1),
                          "p99": round(percentile(call_ms, 0.99), 1)},
        "client_p99_ms": round(percentile(load.latencies, 0.99) * 1000, 1),
    }


async def watch_rollout(gw: Gateway, load: Load, name: str) -> list[dict[str, Any]]:
    """Load until the rollout ends; each change of its state or share, timed."""
    timeline: list[dict[str, Any]] = []
    running = asyncio.create_task(load.run())
    while True:
        rollout = (await asyncio.to_thread(gw.admin, "GET", "/admin/rollouts"))["rollouts"][0]
        if not timeline or (timeline[-1]["state"], timeline[-1]["percent"]) != (
                rollout["state"], rollout["percent"]):
            timeline.append({"at": time.perf_counter(), "state": rollout["state"],
                             "percent": rollout["percent"], "reason": rollout["reason"]})
            progress(f"{name}: {rollout['state']} at {rollout['percent']}% "
                     f"({rollout['reason']})")
        if rollout["state"] in ("rolled_back", "promoted"):
            break
        await asyncio.sleep(0.2)
    load.stopping = True
    await running
    return timeline


def rollout_drill(hold: str = "30s") -> dict[str, Any]:
    sims: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="ironhold-rollout-") as tmp:
        work = Path(tmp)
        stable, bad, good = (simulator(work, name, profile) for name, profile in (
            ("stable", fast()), ("bad", fast(faults=[{"kind": "status", "rate": 0.1}])),
            ("good", fast())))
        sims += [stable[0], bad[0], good[0]]

        def config(candidate: str) -> str:
            return f"""audit: {{enabled: true}}
models:
  - name: chat
    deployments:
      - {{name: stable, url: "{stable[1]}", version: v1}}
      - {{name: candidate, url: "{candidate}", version: v2}}
    rollout:
      candidate: candidate
      steps: [5, 25, 50, 100]
      hold: {hold}
      gates: {{error_rate_max_percent: 1.0, ttft_p95_max_ratio: 1.5,
              refusal_rate_max_ratio: 2.0}}
      on_failure: rollback
"""

        gw = Gateway(work / "gw", config(bad[1]))
        results: dict[str, Any] = {"drill": "rollout", "machine": machine(), "hold": hold}
        try:
            for name, url, want in (("bad", bad[1], "rolled_back"), ("good", good[1],
                                                                    "promoted")):
                if name == "good":
                    gw.apply(config(url))
                load = Load(gw.base + "/v1/chat/completions", gw.key)
                timeline = asyncio.run(watch_rollout(gw, load, name))
                first_traffic = next(t["at"] for t in timeline if t["percent"] > 0)
                results[name] = {
                    "outcome": timeline[-1]["state"], "expected": want,
                    "seconds_from_traffic_to_end": round(timeline[-1]["at"] - first_traffic, 1),
                    "reason": timeline[-1]["reason"], "requests": load.sent,
                    "client_errors": sum(load.errors.values()),
                    "client_error_percent": round(100 * sum(load.errors.values())
                                                  / max(load.sent, 1), 3),
                    "steps": [(t["state"], t["percent"]) for t in timeline]}
        finally:
            gw.close()
            for process in sims:
                stop(process)
    return results


def shadow_drill(rounds: int = 3, seconds: float = 40) -> dict[str, Any]:
    sims: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="ironhold-shadow-") as tmp:
        work = Path(tmp)
        live = simulator(work, "live", fast())
        slow = simulator(work, "slow", {**fast(), "ttft": {"distribution": "lognormal",
                                                          "median_ms": 200, "sigma": 0.3},
                                        "token_latency": {"ms": 30}})
        sims += [live[0], slow[0]]
        deployments = (f'models:\n  - name: chat\n    deployments: [{{name: live, url: '
                       f'"{live[1]}"}}, {{name: next, url: "{slow[1]}"}}]\n')
        without = deployments.replace("{name: next", "{name: nxt").replace(
            f', {{name: nxt, url: "{slow[1]}"}}', "")
        with_shadow = deployments + "    shadow: {deployment: next, percent: 100}\n"
        gw = Gateway(work / "gw", without)
        rows: list[dict[str, Any]] = []
        try:
            for r in range(rounds):
                for label, body in (("off", without), ("on", with_shadow)):
                    gw.apply(body)
                    load = Load(gw.base + "/v1/chat/completions", gw.key)
                    asyncio.run(load.run(seconds))
                    p99 = percentile(load.latencies, 0.99) * 1000
                    rows.append({"round": r, "shadow": label, "p99_ms": round(p99, 2),
                                 "p50_ms": round(percentile(load.latencies, 0.5) * 1000, 2),
                                 "requests": load.sent, "errors": sum(load.errors.values())})
                    progress(f"round {r} shadow {label}: p99 {p99:.1f} ms, "
                             f"{load.sent} requests")
            summary = gw.admin("GET", "/admin/shadow")["shadows"]
        finally:
            gw.close()
            for process in sims:
                stop(process)
    ratios = [float(on["p99_ms"]) / float(off["p99_ms"])
              for off, on in zip(rows[::2], rows[1::2], strict=True)]
    return {"drill": "shadow", "machine": machine(), "rows": rows,
            "p99_ratio_by_round": [round(x, 3) for x in ratios],
            "p99_ratio_median": round(sorted(ratios)[len(ratios) // 2], 3),
            "shadow_summary": summary[0] if summary else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("drill", choices=["reload", "rollout", "shadow", "all"])
    parser.add_argument("--hold", default="30s", help="the rollout drill's hold per step")
    parser.add_argument("--rounds", type=int, default=3, help="shadow drill: off/on rounds")
    parser.add_argument("--seconds", type=float, default=40, help="shadow drill: per run")
    args = parser.parse_args()
    drills: dict[str, Callable[[], dict[str, Any]]] = {
        "reload": reload_drill, "rollout": lambda: rollout_drill(args.hold),
        "shadow": lambda: shadow_drill(args.rounds, args.seconds)}
    for name in drills if args.drill == "all" else [args.drill]:
        results = drills[name]()
        print(json.dumps(results, indent=2))
        save(results, f"change_drills_{name}")


if __name__ == "__main__":
    main()
