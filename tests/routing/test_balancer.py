from __future__ import annotations

import random
from collections import Counter

from ironhold.routing.balancer import LeastOutstandingP2C
from ironhold.routing.deployment import Deployment


def deployment(name: str, outstanding: int = 0, weight: float = 1.0) -> Deployment:
    return Deployment(name=name, group="g", upstream_model="m",
                      transport=None, weight=weight, outstanding=outstanding)  # type: ignore[arg-type]


def test_two_choices_pick_the_less_loaded() -> None:
    busy, idle = deployment("busy", outstanding=10), deployment("idle", outstanding=0)
    balancer = LeastOutstandingP2C(random.Random(1))
    assert all(balancer.pick([busy, idle]) is idle for _ in range(50))


def test_weights_scale_the_load() -> None:
    big, small = deployment("big", outstanding=3, weight=4), deployment("small", 1, weight=1)
    assert LeastOutstandingP2C(random.Random(1)).pick([big, small]) is big  # 0.75 < 1.0


def test_spreads_evenly_when_idle_and_never_repeats_excluded() -> None:
    pool = [deployment(n) for n in "abcd"]
    balancer = LeastOutstandingP2C(random.Random(7))
    counts = Counter(balancer.pick(pool).name for _ in range(4000))  # type: ignore[union-attr]
    assert set(counts) == set("abcd") and min(counts.values()) > 700
    assert balancer.pick(pool, exclude=pool[:3]) is pool[3]
    assert balancer.pick(pool, exclude=pool) is None


def test_failed_deployments_are_passed_over_but_not_abandoned() -> None:
    ok, failed = deployment("ok"), deployment("failed")
    failed.record_failure()
    balancer = LeastOutstandingP2C(random.Random(3))
    assert all(balancer.pick([ok, failed]) is ok for _ in range(50))
    # With nothing healthy left, a failed deployment is still tried rather than refusing.
    assert balancer.pick([failed]) is failed
    failed.record_success()
    assert failed.healthy
    unavailable = deployment("starting")
    unavailable.available = False
    assert balancer.pick([unavailable, failed]) is failed
