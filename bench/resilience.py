"""Resilience benchmarks: the gateway in front of simulator deployments that misbehave.

    python bench/resilience.py [--only tail,tail_closed,failover,slow,brownout] [--rate 200]
                               [--clients 8] [--seconds 30]

- tail:     three deployments, 2% of requests 50x slower; hedging off and on, open loop.
            Target: p99.9 at least 10x lower with at most 5% extra upstream requests.
- tail_closed: the same with a fixed 20 ms base (2% take 1 s), closed loop: ``--clients`` clients
            each sending its next request when the last is answered. Same target.
- failover: three deployments under steady load; one is SIGKILLed mid-run and restarted later.
            Target: zero client-visible errors; reports time to eject and to re-admit.
- slow:     one of four deployments turns 10x slower for a while; round robin against
            least-outstanding against P2C peak-EWMA at p99 and p99.9.
- brownout: every deployment answers 429 with Retry-After. Target: upstream attempts at most
            1.2x client requests, and fast 429s with Retry-After for the clients.

Each simulator and the gateway are separate processes (``ironhold simulate``/``serve``); the
gateway is pinned to CPU 0, the simulators and this process (the open-loop load generator) to
CPU 1. Results go to stdout and to bench/results/resilience.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import orjson
import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from overhead import free_port, machine, pinned, progress, wait_http  # noqa: E402

PY = sys.executable
BODY = orjson.dumps({"model": "chat", "messages": [{"role": "user", "content": "ping"}],
                     "max_tokens": 4})


# -- processes -----------------------------------------------------------------------------------

class Sim:
    def __init__(self, workdir: Path, name: str, profile: dict[str, Any]):
        self.name = name
        self.port = free_port()
        self.profile_path = workdir / f"{name}.yaml"
        self.profile_path.write_text(yaml.safe_dump(profile))
        self.log = (workdir / f"{name}.log").open("ab")
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [*pinned(1), PY, "-m", "ironhold", "simulate", "--port", str(self.port),
             "--profile", str(self.profile_path)], stdout=self.log, stderr=self.log)
        wait_http(self.url + "/models")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def served(self) -> int:
        return int(httpx.get(f"http://127.0.0.1:{self.port}/_sim/requests").json()["served"])

    def set_profile(self, profile: dict[str, Any]) -> None:
        httpx.put(f"http://127.0.0.1:{self.port}/_sim/profile", json=profile).raise_for_status()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


class Gateway:
    def __init__(self, workdir: Path, sims: list[Sim], routing: dict[str, Any]):
        self.port = free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        config = {
            "server": {"host": "127.0.0.1", "port": self.port},
            "state": {"url": "sqlite:///./state.db"},
            "logging": {"access": False, "level": "info"},
            "models": [{"name": "chat", "routing": routing, "deployments": [
                {"name": s.name, "url": s.url, "model": "simulated"} for s in sims]}],
        }
        path = workdir / "ironhold.yaml"
        path.write_text(yaml.safe_dump(config))
        self.key = json.loads(subprocess.run(
            [PY, "-m", "ironhold", "keys", "create", "-c", str(path), "--name", "bench",
             "--json"], capture_output=True, text=True, check=True).stdout)["key"]
        self.log_path = workdir / "ironhold.log"
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [*pinned(0), PY, "-m", "ironhold", "serve", "-c", str(path)], stdout=log, stderr=log)
        wait_http(f"http://127.0.0.1:{self.port}/readyz")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/chat/completions"

    def metric(self, name: str, **labels: str) -> float:
        text = httpx.get(f"http://127.0.0.1:{self.port}/metrics").text
        total = 0.0
        for line in text.splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()


# -- load ------------------------------------------------------------------------------------------

async def open_loop(url: str, key: str, rate: float, seconds: float,
                    on_tick: Any = None) -> list[tuple[float, float, int, str | None]]:
    """(sent at, latency, status, retry-after) per request, from the scheduled send time."""
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    results: list[tuple[float, float, int, str | None]] = []
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=30)) as session:
        async def one(scheduled: float) -> None:
            status, retry_after = 0, None
            try:
                async with session.post(url, data=BODY, headers=headers) as response:
                    await response.read()
                    status, retry_after = response.status, response.headers.get("retry-after")
            except (aiohttp.ClientError, TimeoutError):
                pass
            results.append((scheduled - start, time.perf_counter() - scheduled, status,
                            retry_after))

        start = time.perf_counter()
        tasks = []
        interval = 1.0 / rate
        for i in range(int(rate * seconds)):
            scheduled = start + i * interval
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if on_tick is not None:
                on_tick(scheduled - start)
            tasks.append(asyncio.create_task(one(scheduled)))
        await asyncio.gather(*tasks)
    return results


async def closed_loop(url: str, key: str, clients: int,
                      seconds: float) -> list[tuple[float, float, int, str | None]]:
    """(sent at, latency, status, retry-after) per request; each client sends its next request
    when its last one is answered."""
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    results: list[tuple[float, float, int, str | None]] = []
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=30)) as session:
        start = time.perf_counter()
        end = start + seconds

        async def client() -> None:
            while (sent := time.perf_counter()) < end:
                status, retry_after = 0, None
                try:
                    async with session.post(url, data=BODY, headers=headers) as response:
                        await response.read()
                        status, retry_after = response.status, response.headers.get(
                            "retry-after")
                except (aiohttp.ClientError, TimeoutError):
                    pass
                results.append((sent - start, time.perf_counter() - sent, status, retry_after))

        await asyncio.gather(*(client() for _ in range(clients)))
    return results


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)


def latency_summary(results: list[tuple[float, float, int, str | None]]) -> dict[str, Any]:
    ok = [lat for _, lat, status, _ in results if status == 200]
    return {"requests": len(results), "ok": len(ok), "errors": len(results) - len(ok),
            "p50_ms": pct(ok, 0.5), "p99_ms": pct(ok, 0.99), "p999_ms": pct(ok, 0.999),
            "max_ms": pct(ok, 1.0)}


# -- scenarios -------------------------------------------------------------------------------------

def tail(work: Path, rate: float, seconds: float, clients: int = 0) -> dict[str, Any]:
    # Closed loop: the set-up, a fixed 20 ms base (2% take 1 s).
    ttft = ({"distribution": "fixed", "ms": 20} if clients else
            {"distribution": "lognormal", "median_ms": 10, "sigma": 0.15})
    base = "fixed 20 ms" if clients else "lognormal median 10 ms (sigma 0.15)"
    profile = {"ttft": ttft, "slow": {"rate": 0.02, "factor": 50}, "completion_tokens": 4}
    load = f"closed loop, {clients} clients" if clients else f"open loop, {rate:g} requests/s"
    out: dict[str, Any] = {"setup": f"3 deployments; ttft {base}; 2% of requests 50x "
                                    f"slower; {load}",
                           "rate": rate, "clients": clients, "seconds": seconds}
    for hedged in (False, True):
        sims = [Sim(work, f"tail-{hedged}-{i}", profile) for i in range(3)]
        routing = {"hedging": {"enabled": hedged, "percentile": 97, "max_extra_percent": 5,
                               "min_delay": "5ms"}}
        gw = Gateway(work / f"tail-{hedged}", sims, routing)
        try:
            progress(f"tail: hedging {'on' if hedged else 'off'}, {load} for {seconds:g} s")
            results = asyncio.run(closed_loop(gw.url, gw.key, clients, seconds) if clients
                                  else open_loop(gw.url, gw.key, rate, seconds))
            upstream = sum(s.served() for s in sims)
            summary = latency_summary(results)
            summary["upstream_requests"] = upstream
            summary["extra_upstream_percent"] = round(100 * (upstream / len(results) - 1), 2)
            summary["hedges_sent"] = gw.metric("ironhold_hedges_sent_total")
            summary["hedges_won"] = gw.metric("ironhold_hedges_won_total")
            summary["hedge_budget_exhausted"] = gw.metric(
                "ironhold_retry_budget_exhausted_total", kind="hedge")
            out["hedging_on" if hedged else "hedging_off"] = summary
            progress(f"  {summary}")
        finally:
            gw.stop()
            for s in sims:
                s.stop()
    off, on = out["hedging_off"], out["hedging_on"]
    out["p999_improvement_x"] = round(off["p999_ms"] / on["p999_ms"], 1)
    out["p99_improvement_x"] = round(off["p99_ms"] / on["p99_ms"], 1)
    return out


def failover(work: Path, rate: float, seconds: float) -> dict[str, Any]:
    profile = {"ttft": {"distribution": "lognormal", "median_ms": 10, "sigma": 0.2},
               "completion_tokens": 4}
    sims = [Sim(work, f"fail-{i}", profile) for i in range(3)]
    routing = {"outlier": {"consecutive_failures": 5, "base_ejection": "5s", "health_check": {
        "interval": "500ms", "timeout": "250ms", "unhealthy_threshold": 2,
        "healthy_threshold": 1}}, "retries": {"attempts": 3}}
    gw = Gateway(work / "failover", sims, routing)
    kill_at, restart_at = seconds * 0.25, seconds * 0.6
    events: dict[str, float] = {}

    async def drive() -> list[tuple[float, float, int, str | None]]:
        loop = asyncio.get_running_loop()
        start = time.perf_counter()

        async def chaos() -> None:
            await asyncio.sleep(kill_at)
            sims[0].kill()
            events["killed"] = time.perf_counter() - start
            while "ejected" not in events and time.perf_counter() - start < seconds:
                if await loop.run_in_executor(None, lambda: gw.metric(
                        "ironhold_deployment_ejected", deployment="fail-0")) == 1:
                    events["ejected"] = time.perf_counter() - start
                await asyncio.sleep(0.05)
            await asyncio.sleep(max(0.0, restart_at - (time.perf_counter() - start)))
            await loop.run_in_executor(None, sims[0].start)
            events["restarted"] = time.perf_counter() - start
            while "readmitted" not in events and time.perf_counter() - start < seconds:
                if await loop.run_in_executor(None, lambda: gw.metric(
                        "ironhold_deployment_ejected", deployment="fail-0")) == 0:
                    events["readmitted"] = time.perf_counter() - start
                await asyncio.sleep(0.05)

        watcher = asyncio.create_task(chaos())
        results = await open_loop(gw.url, gw.key, rate, seconds)
        await watcher
        return results

    try:
        progress(f"failover: {rate:g} req/s for {seconds:g} s; kill fail-0 at {kill_at:g} s, "
                 f"restart at {restart_at:g} s")
        results = asyncio.run(drive())
        summary = latency_summary(results)
        summary["events_s"] = {k: round(v, 2) for k, v in events.items()}
        if "ejected" in events:
            summary["time_to_eject_ms"] = round((events["ejected"] - events["killed"]) * 1000)
        if "readmitted" in events:
            summary["time_to_readmit_ms"] = round(
                (events["readmitted"] - events["restarted"]) * 1000)
        summary["retries"] = gw.metric("ironhold_retries_total")
        summary["upstream_failures"] = sum(
            gw.metric("ironhold_upstream_attempts_total", outcome=o)
            for o in ("upstream_unavailable", "bad_gateway", "upstream_timeout"))
        progress(f"  {summary}")
        summary["attempts_to_killed_deployment"] = gw.metric(
            "ironhold_upstream_attempts_total", deployment="fail-0", outcome="upstream_unavailable")
        return {"setup": "3 deployments, non-streaming; health checks every 500 ms "
                         "(out after 2 failures, back after 1 pass)", "rate": rate,
                "seconds": seconds, **summary}
    finally:
        gw.stop()
        for s in sims:
            s.stop()


def slow(work: Path, rate: float, seconds: float) -> dict[str, Any]:
    normal = {"ttft": {"distribution": "lognormal", "median_ms": 20, "sigma": 0.2},
              "completion_tokens": 4}
    slowed = {**normal, "ttft": {"distribution": "lognormal", "median_ms": 200, "sigma": 0.2}}
    out: dict[str, Any] = {"setup": "4 deployments, ttft median 20 ms; one turns 10x slower "
                                    f"from {seconds * 0.2:g} s to {seconds * 0.8:g} s",
                           "rate": rate, "seconds": seconds}
    for balancer in ("round_robin", "least_outstanding", "peak_ewma"):
        sims = [Sim(work, f"slow-{balancer}-{i}", normal) for i in range(4)]
        gw = Gateway(work / f"slow-{balancer}", sims, {"balancer": balancer})
        flipped: dict[str, bool] = {}

        def tick(at: float, sims: list[Sim] = sims, flipped: dict[str, bool] = flipped) -> None:
            if at >= seconds * 0.2 and "on" not in flipped:
                flipped["on"] = True
                sims[0].set_profile(slowed)
            if at >= seconds * 0.8 and "off" not in flipped:
                flipped["off"] = True
                sims[0].set_profile(normal)

        try:
            progress(f"slow: {balancer}, {rate:g} req/s for {seconds:g} s")
            results = asyncio.run(open_loop(gw.url, gw.key, rate, seconds, on_tick=tick))
            summary = latency_summary(results)
            served = [s.served() for s in sims]
            summary["share_to_slow_deployment_percent"] = round(100 * served[0] / sum(served), 1)
            out[balancer] = summary
            progress(f"  {summary}")
        finally:
            gw.stop()
            for s in sims:
                s.stop()
    return out


def brownout(work: Path, rate: float, seconds: float) -> dict[str, Any]:
    limited = {"faults": [{"kind": "status", "status": 429, "rate": 1.0, "retry_after": 1}]}
    sims = [Sim(work, f"brown-{i}", limited) for i in range(3)]
    gw = Gateway(work / "brownout", sims, {})
    try:
        progress(f"brownout: {rate:g} req/s for {seconds:g} s, every deployment 429s")
        results = asyncio.run(open_loop(gw.url, gw.key, rate, seconds))
        upstream = sum(s.served() for s in sims)
        statuses = [status for _, _, status, _ in results]
        limited_latencies = [lat for _, lat, status, _ in results if status == 429]
        with_retry_after = sum(1 for _, _, status, ra in results if status == 429 and ra)
        summary = {
            "requests": len(results), "status_429": statuses.count(429),
            "other_statuses": len(results) - statuses.count(429),
            "with_retry_after": with_retry_after, "upstream_attempts": upstream,
            "upstream_per_client_request": round(upstream / len(results), 3),
            "p50_429_ms": pct(limited_latencies, 0.5), "p99_429_ms": pct(limited_latencies, 0.99),
        }
        progress(f"  {summary}")
        return {"setup": "3 deployments, every answer 429 Retry-After: 1", "rate": rate,
                "seconds": seconds, **summary}
    finally:
        gw.stop()
        for s in sims:
            s.stop()


def tail_closed(work: Path, rate: float, seconds: float, clients: int = 8) -> dict[str, Any]:
    return tail(work, rate, seconds, clients=clients)


SCENARIOS = {"tail": tail, "tail_closed": tail_closed, "failover": failover, "slow": slow,
             "brownout": brownout}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(SCENARIOS),
                        help="comma-separated scenarios (default: all)")
    parser.add_argument("--rate", type=float, default=200, help="open-loop requests/s")
    parser.add_argument("--clients", type=int, default=8,
                        help="closed-loop clients (tail_closed)")
    parser.add_argument("--seconds", type=float, default=30, help="length of each run")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {1})
    results: dict[str, Any] = {"machine": machine()}
    with tempfile.TemporaryDirectory(prefix="ironhold-resilience-") as tmp:
        for name in args.only.split(","):
            if name == "tail_closed":
                results[name] = tail_closed(Path(tmp), args.rate, args.seconds, args.clients)
            else:
                results[name] = SCENARIOS[name](Path(tmp), args.rate, args.seconds)
    out = HERE / "results" / "resilience.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
