"""The detectors' memory over a million requests: ``Insight`` (the per-group and per-deployment
detectors, SLO trackers, drift, live stats, the recent list) fed one million synthetic request
outcomes on a virtual clock (1 ms apart: 1,000 s of traffic), judged every 2 s of it as the
gateway does; traced allocations (tracemalloc) measured along the way. Bounded means the figure
stops growing once the windows are full.

    python bench/insight_memory.py [--requests 1000000] [--deployments 3]

Results go to stdout and to bench/results/insight_memory.json.
"""

from __future__ import annotations

import argparse
import gc
import random
import time
import tracemalloc
from pathlib import Path
from typing import Any

from overhead import machine, save

from ironhold.config import parse_config
from ironhold.telemetry.answers import AnswerFacts
from ironhold.telemetry.insight import Insight
from ironhold.telemetry.metrics import Metrics
from ironhold.telemetry.outcome import CallOutcome
from ironhold.telemetry.signals import SignalBoard


def outcome(rng: random.Random, at: float, deployments: int, i: int) -> CallOutcome:
    facts = AnswerFacts(response_model="m", response_id=f"r{i}", finish_reasons=["stop"],
                        chars=rng.randint(1, 4000))
    failed = rng.random() < 0.01
    return CallOutcome(
        at=at, request_id=f"req-{i}", operation="chat", model=f"group-{i % 2}",
        deployment=f"d{i % deployments}", latency=rng.lognormvariate(-2, 0.6),
        ttft=rng.lognormvariate(-3, 0.6), status=502 if failed else 200,
        outcome="bad_gateway" if failed else "ok", fault="server" if failed else "",
        principal=f"key_{i % 50}", tenant=f"tenant-{i % 7}", facts=None if failed else facts,
        prompt_chars=rng.randint(5, 3000), script="latin", guard_blocked=None, guard_notes=(),
        policy=None, limit_refused=None, audit_seq=i, trace_id=None, cost_micros=12)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--deployments", type=int, default=3)
    args = parser.parse_args()
    groups = [{"name": f"group-{g}", "slo": {"availability": 99.9, "ttft_p95": "800ms",
                                             "latency_p99": "10s"},
               "deployments": [{"name": f"d{d}", "url": "http://127.0.0.1:9/v1"}
                               for d in range(args.deployments)]} for g in range(2)]
    config = parse_config({"models": groups}, source="bench", base_dir=Path("."))
    metrics = Metrics()
    rng = random.Random(7)
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    insight = Insight(config, metrics, SignalBoard(metrics))
    start = 1_800_000_000.0
    checkpoints = {10_000, 100_000, 250_000, 500_000, 750_000, args.requests}
    samples: list[dict[str, Any]] = []
    began = time.perf_counter()
    next_judge = start + 2.0
    for i in range(1, args.requests + 1):
        at = start + i * 0.001
        insight.observe(outcome(rng, at, args.deployments, i))
        if at >= next_judge:
            insight.judge(at)
            next_judge += 2.0
        if i in checkpoints:
            gc.collect()
            used = tracemalloc.get_traced_memory()[0] - base
            samples.append({"requests": i, "mib": round(used / 2**20, 2)})
            print(f"{i:>9,} requests: {used / 2**20:7.2f} MiB", flush=True)
    elapsed = time.perf_counter() - began
    tracemalloc.stop()
    growth = samples[-1]["mib"] - next(s["mib"] for s in samples if s["requests"] >= 250_000)
    results = {"machine": machine(), "requests": args.requests,
               "deployments": args.deployments, "groups": 2, "samples": samples,
               "growth_after_250k_mib": round(growth, 2),
               "signals": [s.as_json() for s in insight.board.listing()],
               "seconds": round(elapsed, 1)}
    print(f"growth from 250,000 to {args.requests:,} requests: {growth:+.2f} MiB "
          f"({elapsed:.0f} s, tracemalloc on)")
    print(f"saved {save(results, 'insight_memory')}")


if __name__ == "__main__":
    main()
