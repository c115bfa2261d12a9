"""The cost of one Cedar policy decision, as the gateway makes it (target: p99 <= 100 us).

    taskset -c 0 python bench/policy.py [--n 50000] [--principals 100]

Decisions use the example policies (examples/policies/), a mix of keys, users and agents, and a
varied context; the first decision for each principal (which parses its entities) is included.
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import time
from importlib.metadata import version
from pathlib import Path
from typing import Literal

from ironhold.core.principal import Principal, Scopes
from ironhold.policy.engine import PolicyEngine
from ironhold.policy.entities import RequestContext

POLICIES = Path(__file__).resolve().parents[1] / "examples" / "policies"


def principals(n: int) -> list[Principal]:
    out: list[Principal] = []
    for i in range(n):
        tenant = random.choice(["acme", "research", None])
        kind: Literal["key", "user", "agent"] = ("key", "user", "agent")[i % 3]
        if kind == "agent":
            out.append(Principal(id=f"agent:a{i}", kind="agent", name=f"a{i}", tenant=tenant,
                                 chain=(f"key_{i}", f"agent:a{i}"),
                                 scopes=Scopes(admin=i % 7 == 0)))
        else:
            ident = f"key_{i}" if kind == "key" else f"user:u{i}"
            out.append(Principal(id=ident, kind=kind, name=ident, tenant=tenant,
                                 groups=("staff",), scopes=Scopes(admin=i % 7 == 0)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--principals", type=int, default=100)
    args = parser.parse_args()
    random.seed(7)
    start = time.perf_counter()
    engine = PolicyEngine.load([POLICIES])
    load_ms = (time.perf_counter() - start) * 1000
    people = principals(args.principals)
    requests = [
        (random.choice(people), random.choice(["chat", "embed", "complete", "manage_keys"]),
         random.choice(["chat", "embed", "large"]),
         RequestContext(operation="chat", estimated_tokens=random.randint(1, 12_000),
                        remaining_budget_cents=random.choice([None, 0, 500]),
                        client_ip=random.choice(["127.0.0.1", "10.2.3.4", "8.8.8.8"])))
        for _ in range(1000)
    ]
    samples = []
    allowed = 0
    for i in range(args.n):
        principal, action, model, context = requests[i % len(requests)]
        kind: Literal["Gateway", "Model"] = "Gateway" if action == "manage_keys" else "Model"
        t = time.perf_counter()
        decision = engine.decide(principal, action, kind, model, context)
        samples.append(time.perf_counter() - t)
        allowed += decision.allowed
    samples.sort()

    def pct(p: float) -> float:
        return samples[min(len(samples) - 1, int(len(samples) * p))] * 1e6

    print(f"Cedar decision (cedarpy {version('cedarpy')}, CPython {platform.python_version()}), "
          f"{len(engine.policy_ids)} policies, "
          f"{args.principals} principals, {args.n} decisions ({allowed / args.n:.0%} allowed)")
    print(f"  load + validate: {load_ms:.1f} ms")
    print(f"  mean {statistics.fmean(samples) * 1e6:.1f} us  p50 {pct(0.5):.1f} us  "
          f"p99 {pct(0.99):.1f} us  p99.9 {pct(0.999):.1f} us  max {samples[-1] * 1e6:.1f} us")


if __name__ == "__main__":
    main()
