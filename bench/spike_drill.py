"""The latency-spike drill: three simulated deployments with heavy-tailed latencies behind one
gateway, a steady open-loop load of streams for ``--steady-minutes`` (no latency signal may be
raised), then one deployment's time to first token made five times slower: how long until a
``latency_spike`` signal names it (target: within 30 s).

    python bench/spike_drill.py [--steady-minutes 10] [--rate 60]

Results go to stdout and to bench/results/spike_drill.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from overhead import PY, free_port, load, machine, progress, save, serve_ironhold, stop, wait_http

HERE = Path(__file__).resolve().parent


def profile(ttft_ms: float) -> dict[str, Any]:
    """Log-normal time to first token with a heavy tail: 2% of requests 20 times slower."""
    return {"ttft": {"distribution": "lognormal", "median_ms": ttft_ms, "sigma": 0.6},
            "token_latency": {"distribution": "exponential", "mean_ms": 2},
            "completion_tokens": 8, "slow": {"rate": 0.02, "factor": 20}}


def start_simulator(workdir: Path, name: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    path = workdir / f"{name}.json"
    path.write_text(json.dumps(profile(40)))
    process = subprocess.Popen([PY, "-m", "ironhold", "simulate", "--port", str(port),
                                "--profile", str(path)], stderr=subprocess.DEVNULL)
    wait_http(f"http://127.0.0.1:{port}/v1/models")
    return process, f"http://127.0.0.1:{port}"


def latency_signals(base: str, key: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{base}/admin/signals", headers={"Authorization": f"Bearer {key}"},
                       timeout=10).json()
    return [s for s in answer["signals"] if s["kind"] == "latency_spike"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steady-minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=60.0, help="requests/s, open loop")
    parser.add_argument("--after-seconds", type=float, default=60.0,
                        help="how long to wait for the spike to be signalled")
    args = parser.parse_args()
    sims: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="ironhold-spike-") as tmp:
        work = Path(tmp)
        urls = []
        for i in range(3):
            process, url = start_simulator(work, f"sim{i}")
            sims.append(process)
            urls.append(url)
        deployments = ", ".join(f'{{name: gpu-{i}, url: "{u}/v1"}}' for i, u in enumerate(urls))
        gateway, chat, key = serve_ironhold(work / "gw", urls[0] + "/v1", key_args=("--admin",),
                                            deployments=deployments)
        base = chat.removesuffix("/v1/chat/completions")
        results: dict[str, Any] = {"machine": machine(), "rate": args.rate,
                                   "steady_minutes": args.steady_minutes}
        try:
            steady = args.steady_minutes * 60
            progress(f"steady load at {args.rate:g}/s for {steady:.0f} s")
            seen: list[dict[str, Any]] = []
            done = threading.Event()

            def watch() -> None:
                while not done.wait(2.0):
                    seen.extend(s for s in latency_signals(base, key) if s not in seen)

            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            results["steady_load"] = load(chat, key, rate=args.rate, seconds=steady,
                                          stream=True)
            done.set()
            watcher.join()
            results["false_signals"] = seen
            progress(f"steady: {len(seen)} latency signals (want 0)")

            progress("gpu-1's time to first token x5")
            httpx.put(f"{urls[1]}/_sim/profile", json=profile(200), timeout=10)
            spiked = time.monotonic()
            found: dict[str, Any] = {}

            def detect() -> None:
                while time.monotonic() - spiked < args.after_seconds and not found:
                    for s in latency_signals(base, key):
                        if s["deployment"] == "gpu-1" and s["detail"]["subject"] == "ttft":
                            found.update(s, seconds=round(time.monotonic() - spiked, 1))
                    time.sleep(0.5)

            detector = threading.Thread(target=detect, daemon=True)
            detector.start()
            load(chat, key, rate=args.rate, seconds=args.after_seconds, stream=True)
            detector.join()
            results["spike"] = found or None
            results["seconds_to_signal"] = found.get("seconds")
            results["others_signalled"] = [s for s in latency_signals(base, key)
                                           if s["deployment"] != "gpu-1"]
        finally:
            stop(gateway)
            for process in sims:
                stop(process)
    print(json.dumps({k: results[k] for k in ("seconds_to_signal", "false_signals",
                                              "others_signalled")}, indent=2))
    if results["spike"]:
        print("evidence:", json.dumps(results["spike"]["detail"]))
    print(f"saved {save(results, 'spike_drill')}")


if __name__ == "__main__":
    main()
