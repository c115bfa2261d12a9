from __future__ import annotations

import random
import time
from collections import Counter

from ironhold.routing.balancer import (
    LeastOutstanding,
    PeakEwmaP2C,
    PrefixAffinity,
    RoundRobin,
)
from ironhold.routing.deployment import Deployment


def deployment(name: str, outstanding: int = 0, weight: float = 1.0,
               latency: float = 0.0) -> Deployment:
    d = Deployment(name=name, group="g", upstream_model="m",
                   transport=None, weight=weight, outstanding=outstanding)  # type: ignore[arg-type]
    if latency:
        d.latency.observe(latency, time.monotonic())
    return d


def test_peak_ewma_prefers_the_faster_deployment_at_equal_load() -> None:
    fast, slow = deployment("fast", latency=0.01), deployment("slow", latency=0.5)
    balancer = PeakEwmaP2C(random.Random(1))
    assert all(balancer.pick([fast, slow]) is fast for _ in range(50))


def test_peak_ewma_weighs_latency_against_outstanding_and_weight() -> None:
    # 10 ms with 9 in flight costs 0.1; 50 ms idle costs 0.05: the idle one wins.
    busy, idle = deployment("busy", 9, latency=0.01), deployment("idle", 0, latency=0.05)
    assert PeakEwmaP2C(random.Random(1)).pick([busy, idle]) is idle
    big, small = deployment("big", 3, weight=4, latency=0.01), deployment("small", 1,
                                                                          latency=0.01)
    assert PeakEwmaP2C(random.Random(1)).pick([big, small]) is big  # (4/4) < (2/1)


def test_peak_ewma_takes_a_slow_observation_at_once_and_forgets_slowly() -> None:
    d = deployment("d", latency=0.01)
    now = time.monotonic()
    d.latency.observe(1.0, now)
    assert d.latency.current(now) == 1.0  # the peak, at once
    d.latency.observe(0.01, now + 0.1)
    assert d.latency.current(now + 0.1) > 0.9  # one fast answer barely moves it
    assert d.latency.current(now + 60) < 0.01  # idle, it decays: the deployment is tried again


def test_two_choices_spread_load_when_idle() -> None:
    pool = [deployment(n) for n in "abcd"]
    balancer = PeakEwmaP2C(random.Random(7))
    counts = Counter(balancer.pick(pool).name for _ in range(4000))
    assert set(counts) == set("abcd") and min(counts.values()) > 700


def test_least_outstanding_and_round_robin() -> None:
    a, b, c = deployment("a", 2), deployment("b", 1), deployment("c", 3)
    assert LeastOutstanding(random.Random(1)).pick([a, b, c]) is b
    heavy = deployment("heavy", 4, weight=8)
    assert LeastOutstanding(random.Random(1)).pick([a, b, heavy]) is heavy  # 0.5 per weight
    rr = RoundRobin()
    assert [rr.pick([a, b, c]).name for _ in range(6)] == ["b", "c", "a", "b", "c", "a"]


def test_prefix_affinity_is_sticky_and_bounded_by_load() -> None:
    pool = [deployment(n) for n in "abcd"]
    affinity = PrefixAffinity(load_factor=1.25)
    key = PrefixAffinity.key_of({"messages": [{"role": "system", "content": "You are terse."},
                                              {"role": "user", "content": "hi"}]})
    assert key is not None
    home = affinity.pick(key, pool)
    assert home is not None and all(affinity.pick(key, pool) is home for _ in range(20))
    # Another prompt lands elsewhere at least sometimes (rendezvous hashing spreads keys).
    picked = [affinity.pick(PrefixAffinity.key_of(
        {"messages": [{"role": "system", "content": f"prompt {i}"}]}) or b"", pool)
        for i in range(40)]
    homes = {d.name for d in picked if d is not None}
    assert len(homes) == 4
    # Over its fair share, the next-ranked deployment takes the request.
    home.outstanding = 10
    other = affinity.pick(key, pool)
    assert other is not None and other is not home
    assert PrefixAffinity.key_of({"messages": [{"role": "user", "content": "no system"}]}) is None
