"""How ``serve --workers N`` scales on one machine: maximum requests/s for each N, the workers
pinned to cores 0..N-1 and the fixed-response upstream and the load generator to cores of their
own (issue 20's target: 2 workers at least 1.8x one).

    python bench/workers.py [--workers 1,2,4,8] [--seconds 8] [--rounds 3]

It needs N + 2 cores for the largest N (one for the upstream, one for the load generator), and
says so rather than measure workers that share a core with their load. Every N runs with
limits in Redis (``state.redis``, which more than one worker needs), so the comparison is like
for like. Results go to stdout and to bench/results/workers.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from overhead import PY, free_port, machine, progress, save, stop, wait_http

HERE = Path(__file__).resolve().parent


def cores(first: int, last: int) -> list[str]:
    return ["taskset", "-c", f"{first}-{last}" if last > first else str(first)]


def serve(workdir: Path, upstream: str, workers: int) -> tuple[subprocess.Popen[bytes], str,
                                                               str]:
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "gateway.yaml"
    config.write_text(f"""
server: {{host: 127.0.0.1, port: {port}, drain: {{grace: 0.1s}}}}
state: {{url: "sqlite:///./state.db", redis: "redis://127.0.0.1:6379/9"}}
logging: {{access: false}}
models:
  - name: bench
    deployments: [{{url: "{upstream}"}}]
""")
    key = json.loads(subprocess.run(
        [PY, "-m", "ironhold", "keys", "create", "-c", str(config), "--name", "bench",
         "--json"], capture_output=True, text=True, check=True, cwd=workdir).stdout)["key"]
    process = subprocess.Popen([*cores(0, workers - 1), PY, "-m", "ironhold", "serve", "-c",
                                str(config), "--workers", str(workers)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=workdir)
    wait_http(f"http://127.0.0.1:{port}/readyz")
    return process, f"http://127.0.0.1:{port}/v1/chat/completions", key


def measure(url: str, key: str, load_core: int, seconds: float) -> dict[str, Any]:
    out = subprocess.run([*cores(load_core, load_core), PY, str(HERE / "loadgen.py"), url,
                          "--key", key, "--seconds", str(seconds), "--concurrency", "128"],
                         capture_output=True, text=True, check=True, timeout=seconds * 4 + 60)
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    counts = [int(n) for n in args.workers.split(",")]
    available = os.cpu_count() or 1
    if max(counts) + 2 > available:
        sys.exit(f"--workers {max(counts)} needs {max(counts) + 2} cores (the workers', the "
                 f"upstream's and the load generator's); this machine has {available}")
    upstream_core, load_core = max(counts), max(counts) + 1
    upstream_port = free_port()
    upstream = subprocess.Popen([*cores(upstream_core, upstream_core), PY,
                                 str(HERE / "fixed_upstream.py"), str(upstream_port)])
    results: dict[str, Any] = {"machine": machine(), "seconds": args.seconds, "runs": {}}
    try:
        wait_http(f"http://127.0.0.1:{upstream_port}/v1/models")
        with tempfile.TemporaryDirectory(prefix="ironhold-workers-bench-") as tmp:
            for n in counts:
                gateway, url, key = serve(Path(tmp) / f"w{n}", f"http://127.0.0.1:"
                                          f"{upstream_port}/v1", n)
                try:
                    measure(url, key, load_core, 2)  # warm-up
                    runs = []
                    for r in range(args.rounds):
                        progress(f"{n} worker(s): round {r + 1}/{args.rounds}")
                        runs.append(measure(url, key, load_core, args.seconds)["rps"])
                    results["runs"][n] = runs
                finally:
                    stop(gateway)
    finally:
        stop(upstream)
    medians = {n: statistics.median(runs) for n, runs in results["runs"].items()}
    base = medians[counts[0]]
    results["rps_median"] = medians
    results["ratio_to_first"] = {n: round(m / base, 3) for n, m in medians.items()}
    print(json.dumps(results, indent=2))
    save(results, "workers")


if __name__ == "__main__":
    main()
