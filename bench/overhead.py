"""Gateway overhead: added latency and maximum requests/s, Ironhold against a direct call, and
optionally LiteLLM's proxy, all in front of the same fixed-response upstream in one run.

    python bench/overhead.py [--rate 1000] [--seconds 10] [--repeats 3] [--litellm PATH]

Layout on a 2-core machine: the gateway under test is pinned to CPU 0; the upstream and the
load generator (separate processes) to CPU 1. Each latency run is open loop at a fixed rate
(no coordinated omission); direct and gateway runs are interleaved so they share conditions.
Results go to stdout and to bench/results/overhead.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
PY = sys.executable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinned(cpu: int) -> list[str]:
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", str(cpu)]
    return []


def wait_http(url: str, seconds: float = 60, headers: dict[str, str] | None = None) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, headers=headers, timeout=2).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"not ready in {seconds:.0f}s: {url}")


def load(url: str, key: str, *, rate: float = 0, concurrency: int = 64,
         seconds: float = 10, stream: bool = False,
         headers: dict[str, str] | None = None) -> dict[str, Any]:
    command = [*pinned(1), PY, str(HERE / "loadgen.py"), url, "--key", key,
               "--seconds", str(seconds), *(["--stream"] if stream else [])]
    for name, value in (headers or {}).items():
        command += ["--header", f"{name}:{value}"]
    command += ["--rate", str(rate)] if rate else ["--concurrency", str(concurrency)]
    out = subprocess.run(command, capture_output=True, text=True, check=True,
                         timeout=seconds * 4 + 60)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def median_of(runs: list[dict[str, Any]], field: str) -> float:
    return round(float(statistics.median(r[field] for r in runs)), 3)


def progress(text: str) -> None:
    print(f"• {text}", file=sys.stderr, flush=True)


def serve_ironhold(workdir: Path, upstream: str, sections: str = "",
                   env: dict[str, str] | None = None, key_args: tuple[str, ...] = (),
                   deployments: str | None = None
                   ) -> tuple[subprocess.Popen[bytes], str, str]:
    """An Ironhold process pinned to CPU 0, in front of ``upstream`` (or of ``deployments``,
    the YAML of a deployment list's items), its config the defaults plus ``sections`` (YAML),
    with a fresh key; returns it, its chat URL and the key."""
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "ironhold.yaml"
    config.write_text(f"""
server: {{host: 127.0.0.1, port: {port}}}
state: {{url: "sqlite:///./state.db"}}
{sections}
models:
  - name: bench
    deployments: [{deployments or f'{{url: "{upstream}"}}'}]
""")
    key = json.loads(subprocess.run(
        [PY, "-m", "ironhold", "keys", "create", "-c", str(config), "--name", "bench", "--json",
         *key_args], capture_output=True, text=True, check=True, cwd=workdir, env=env
    ).stdout)["key"]
    log = (workdir / "ironhold.log").open("wb")
    process = subprocess.Popen([*pinned(0), PY, "-m", "ironhold", "serve", "-c", str(config)],
                               stdout=log, stderr=log, cwd=workdir, env=env)
    wait_http(f"http://127.0.0.1:{port}/readyz")
    return process, f"http://127.0.0.1:{port}/v1/chat/completions", key


def start_ironhold(workdir: Path, upstream: str, audit: bool = True, fsync: bool = True,
                   guard: bool = True) -> tuple[subprocess.Popen[bytes], str, str]:
    return serve_ironhold(workdir, upstream, f"""
audit: {{enabled: {str(audit).lower()}, fsync: {str(fsync).lower()}}}
guard: {{enabled: {str(guard).lower()}}}
""")


def start_upstream() -> tuple[subprocess.Popen[bytes], str]:
    """The fixed-response upstream pinned to CPU 1; returns it and its base URL (``.../v1``)."""
    port = free_port()
    process = subprocess.Popen([*pinned(1), PY, str(HERE / "fixed_upstream.py"), str(port)])
    return process, f"http://127.0.0.1:{port}/v1"


def save(results: dict[str, Any], name: str) -> Path:
    """Write ``results`` to bench/results/NAME.json; returns the path."""
    out = HERE / "results" / f"{name}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    return out


def start_litellm(binary: str, workdir: Path, upstream: str) -> tuple[subprocess.Popen[bytes],
                                                                      str, str]:
    port = free_port()
    config = workdir / "litellm.yaml"
    config.write_text(f"""
model_list:
  - model_name: bench
    litellm_params: {{model: openai/bench, api_base: "{upstream}", api_key: none}}
""")
    key = "sk-bench-master-key"
    env = {**os.environ, "LITELLM_MASTER_KEY": key, "LITELLM_LOG": "ERROR"}
    log = (workdir / "litellm.log").open("wb")
    process = subprocess.Popen([*pinned(0), binary, "--config", str(config), "--port", str(port),
                                "--num_workers", "1"], stdout=log, stderr=log, env=env)
    wait_http(f"http://127.0.0.1:{port}/health/liveliness", seconds=180)
    return process, f"http://127.0.0.1:{port}/v1/chat/completions", key


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = {name: metadata.version(name) for name in ("ironhold", "aiohttp", "uvloop")}
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "kernel": platform.release(), **versions}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=1000, help="open-loop requests/s")
    parser.add_argument("--seconds", type=float, default=10, help="length of each run")
    parser.add_argument("--repeats", type=int, default=3, help="latency runs per target")
    parser.add_argument("--concurrency", type=int, default=64, help="closed-loop in-flight")
    parser.add_argument("--litellm", help="path to a `litellm` executable to compare with")
    parser.add_argument("--no-audit", action="store_true",
                        help="run Ironhold with the audit log off (to measure what it costs)")
    parser.add_argument("--no-guard", action="store_true",
                        help="run Ironhold with the runtime guard off (to measure what it costs)")
    parser.add_argument("--no-fsync", action="store_true",
                        help="audit.fsync: false (records survive a crash, not power loss)")
    parser.add_argument("--litellm-rate", type=float, default=40,
                        help="open-loop rate for LiteLLM's latency run (it cannot take 1000/s)")
    args = parser.parse_args()

    results: dict[str, Any] = {"machine": machine(), "rate": args.rate,
                               "seconds": args.seconds, "repeats": args.repeats}
    with tempfile.TemporaryDirectory(prefix="ironhold-bench-") as tmp:
        workdir = Path(tmp)
        upstream_process, upstream = start_upstream()
        direct = upstream + "/chat/completions"
        processes = [upstream_process]
        try:
            progress("starting Ironhold (pinned to CPU 0)")
            gateway, gateway_url, key = start_ironhold(workdir, upstream,
                                                       audit=not args.no_audit,
                                                       fsync=not args.no_fsync,
                                                       guard=not args.no_guard)
            results["audit"] = not args.no_audit
            results["guard"] = not args.no_guard
            results["audit_fsync"] = not args.no_fsync
            processes.append(gateway)
            progress("warming up")
            load(direct, key, rate=500, seconds=2)
            load(gateway_url, key, rate=500, seconds=2)
            runs: dict[str, list[dict[str, Any]]] = {"direct": [], "ironhold": []}
            for i in range(args.repeats):
                for name, url in (("direct", direct), ("ironhold", gateway_url)):
                    progress(f"latency at {args.rate:.0f}/s, run {i + 1}/{args.repeats}: {name}")
                    runs[name].append(load(url, key, rate=args.rate, seconds=args.seconds))
            latency = {
                name: {f: median_of(r, f) for f in ("p50_ms", "p90_ms", "p99_ms", "p999_ms")}
                | {"errors": sum(x["errors"] for x in r)}
                for name, r in runs.items()
            }
            latency["added"] = {f: round(latency["ironhold"][f] - latency["direct"][f], 3)
                                for f in ("p50_ms", "p90_ms", "p99_ms", "p999_ms")}
            results["latency"] = latency
            results["latency_runs"] = runs
            progress(f"max requests/s, closed loop with {args.concurrency} in flight")
            results["max_rps"] = {
                "direct": load(direct, key, concurrency=args.concurrency, seconds=args.seconds),
                "ironhold": load(gateway_url, key, concurrency=args.concurrency,
                                 seconds=args.seconds),
            }
            stop(gateway)
            processes.remove(gateway)
            if args.litellm:
                progress("starting LiteLLM's proxy (one worker, pinned to CPU 0)")
                litellm, litellm_url, litellm_key = start_litellm(args.litellm, workdir, upstream)
                processes.append(litellm)
                load(litellm_url, litellm_key, rate=20, seconds=3)
                progress("LiteLLM: max requests/s")
                results["max_rps"]["litellm"] = load(
                    litellm_url, litellm_key, concurrency=args.concurrency, seconds=args.seconds)
                progress(f"LiteLLM: latency at {args.litellm_rate:.0f}/s")
                results["litellm_latency"] = load(litellm_url, litellm_key,
                                                  rate=args.litellm_rate, seconds=args.seconds)
                results["litellm_version"] = subprocess.run(
                    [str(Path(args.litellm).parent / "python"), "-c",
                     "import importlib.metadata as m; print(m.version('litellm'))"],
                    capture_output=True, text=True).stdout.strip()
                ratio = results["max_rps"]["ironhold"]["rps"] / max(
                    results["max_rps"]["litellm"]["rps"], 0.1)
                results["ironhold_vs_litellm_rps"] = round(ratio, 1)
        finally:
            for process in processes:
                stop(process)
    out = save(results, "overhead")
    report(results)
    print(f"\nfull results: {out}")


def report(results: dict[str, Any]) -> None:
    lat, rps = results["latency"], results["max_rps"]
    print(f"\nMachine: {results['machine']}")
    print(f"\nLatency at {results['rate']:.0f} requests/s (median of {results['repeats']} runs "
          f"of {results['seconds']:.0f}s), ms:")
    print(f"  {'':10} {'p50':>8} {'p90':>8} {'p99':>8} {'p99.9':>8}")
    for name in ("direct", "ironhold", "added"):
        row = lat[name]
        print(f"  {name:10} {row['p50_ms']:8.3f} {row['p90_ms']:8.3f} {row['p99_ms']:8.3f} "
              f"{row['p999_ms']:8.3f}")
    print("  target: added p50 <= 1 ms, p99 <= 5 ms: "
          + ("met" if lat["added"]["p50_ms"] <= 1 and lat["added"]["p99_ms"] <= 5 else "NOT met"))
    print("\nMaximum requests/s (closed loop):")
    for name, row in rps.items():
        print(f"  {name:10} {row['rps']:10.1f}   errors {row['errors']}   "
              f"p50 {row.get('p50_ms', 0):.2f} ms")
    if "ironhold_vs_litellm_rps" in results:
        ratio = results["ironhold_vs_litellm_rps"]
        verdict = "met" if ratio >= 20 else "NOT met"
        print(f"  Ironhold / LiteLLM: {ratio}x (target >= 20x: {verdict})")


if __name__ == "__main__":
    main()
