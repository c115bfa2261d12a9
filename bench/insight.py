"""What seeing costs: the default config's saturated throughput with traces off, traced at
``sample_ratio`` 0.05 and 1.0 with no cap on kept traces (exported over OTLP/HTTP to a counting
receiver), traced at 1.0 under the default cap (200 kept traces a second), with the console
open (its state polled every second, as the page does), and with signals switched off, side by
side in one run on one core.

    python bench/insight.py [--seconds 8] [--rounds 5] [--concurrency 64]

Layout as in trust_stack.py: every gateway pinned to CPU 0, the upstream, the load generator
and the OTLP receiver to CPU 1; the gateways run at once and take turns, in an order that
rotates each round. Targets (issue #8): traced at 1.0 keeps at least 90% of the untraced
throughput, at 0.05 at least 98%; the console open costs under 2%. Judged on ratios taken
within each round (runs seconds apart), medians over rounds.
Results go to stdout and to bench/results/insight.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

import httpx
from overhead import (
    PY,
    free_port,
    load,
    machine,
    pinned,
    progress,
    save,
    serve_ironhold,
    start_upstream,
    stop,
    wait_http,
)

HERE = Path(__file__).resolve().parent
BASE = "untraced"
CONSOLE = "untraced, console open"


def configs(otlp: str) -> dict[str, str]:
    def traced(ratio: float, cap: str) -> str:
        return (f"telemetry: {{traces: {{otlp_endpoint: '{otlp}', sample_ratio: {ratio}, "
                f"max_per_second: {cap}}}}}\n")

    return {
        BASE: "",
        "traced 0.05": traced(0.05, "null"),
        "traced 1.0": traced(1.0, "null"),
        "traced 1.0, capped 200/s": traced(1.0, "200"),
        CONSOLE: "",
        "signals off": "telemetry: {signals: {enabled: false}}\n",
    }


class ConsolePoller:
    """What an open console does: GET /admin/console/state every second."""

    def __init__(self, url: str, key: str):
        self._url, self._key = url, key
        self._stop = threading.Event()
        self.polls = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ConsolePoller:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        with httpx.Client(headers={"Authorization": f"Bearer {self._key}"}) as client:
            while not self._stop.wait(1.0):
                if client.get(self._url, timeout=5).status_code == 200:
                    self.polls += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()

    upstream, upstream_url = start_upstream()
    sink_port = free_port()
    sink = subprocess.Popen([*pinned(1), PY, str(HERE / "otlp_sink.py"), str(sink_port)],
                            stdout=subprocess.PIPE, text=True)
    wait_http(f"http://127.0.0.1:{sink_port}/")
    processes: list[subprocess.Popen[bytes]] = []
    gateways: dict[str, tuple[str, str]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="ironhold-insight-") as tmp:
            for i, (name, sections) in enumerate(
                    configs(f"http://127.0.0.1:{sink_port}").items()):
                progress(f"starting {name}")
                process, url, key = serve_ironhold(Path(tmp) / str(i), upstream_url, sections,
                                                   key_args=("--admin",))
                processes.append(process)
                gateways[name] = (url, key)
            progress("warming up")
            for url, key in gateways.values():
                load(url, key, concurrency=args.concurrency, seconds=3)
            runs: dict[str, list[float]] = {name: [] for name in gateways}
            errors = 0
            polls = 0
            names = list(gateways)
            for round_ in range(args.rounds):
                shift = round_ % len(names)
                order = names[shift:] + names[:shift]
                progress(f"round {round_ + 1}/{args.rounds}: {', '.join(order)}")
                for name in order:
                    url, key = gateways[name]
                    if name == CONSOLE:
                        state = url.replace("/v1/chat/completions", "/admin/console/state")
                        with ConsolePoller(state, key) as poller:
                            result = load(url, key, concurrency=args.concurrency,
                                          seconds=args.seconds)
                        polls += poller.polls
                    else:
                        result = load(url, key, concurrency=args.concurrency,
                                      seconds=args.seconds)
                    runs[name].append(result["rps"])
                    errors += result["errors"]
    finally:
        for process in processes:
            stop(process)
        sink.terminate()
        taken = json.loads(sink.communicate(timeout=15)[0] or "{}")
        stop(upstream)
    results: dict[str, Any] = {"machine": machine(), "seconds": args.seconds,
                               "rounds": args.rounds, "concurrency": args.concurrency,
                               "errors": errors, "console_polls": polls, "otlp": taken,
                               "configs": {}}
    for name, values in runs.items():
        paired = [v / b for v, b in zip(values, runs[BASE], strict=True)]
        results["configs"][name] = {"rps": round(statistics.median(values), 1),
                                    "rps_runs": values,
                                    "of_untraced": round(statistics.median(paired), 3),
                                    "of_untraced_runs": [round(p, 3) for p in paired]}
    report(results)
    print(f"saved {save(results, 'insight')}")


def report(results: dict[str, Any]) -> None:
    print(f"\n{results['machine']['cpu']}, {results['rounds']} rounds of "
          f"{results['seconds']:g} s, {results['concurrency']} in flight")
    print(f"{'config':<24} {'req/s':>8} {'of untraced':>12}  per round")
    for name, row in results["configs"].items():
        rounds = " ".join(f"{r:.0%}" for r in row["of_untraced_runs"])
        print(f"{name:<24} {row['rps']:>8.0f} {row['of_untraced']:>12.1%}  {rounds}")
    print(f"OTLP receiver took {results['otlp'].get('posts', 0)} posts, "
          f"{results['otlp'].get('bytes', 0) / 1e6:.1f} MB; console polled "
          f"{results['console_polls']} times; {results['errors']} errors")


if __name__ == "__main__":
    main()
