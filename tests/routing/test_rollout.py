"""A rollout's split and gates, alone: which side a request is on, where its attempts may go,
and when a step's gates pass or fail."""

from __future__ import annotations

from ironhold.config.changes import GatesConfig
from ironhold.core.exchange import Exchange, Operation
from ironhold.routing.deployment import Deployment
from ironhold.routing.rollout import Split, judge, wilson_bounds


def exchange(user: str) -> Exchange:
    return Exchange("r", Operation.CHAT, "chat", {"user": user}, False)


def deployment(name: str) -> Deployment:
    return Deployment(name, "chat", "m", transport=None)  # type: ignore[arg-type]


def test_a_session_sticks_to_its_side_for_a_step_and_the_share_follows_the_percent() -> None:
    split = Split("candidate")
    split.new_window(25, "r1:0")
    sides = [split.side(exchange(f"user-{i}")) for i in range(4000)]
    share = sides.count("candidate") / len(sides)
    assert 0.22 < share < 0.28
    assert all(split.side(exchange(f"user-{i}")) == sides[i] for i in range(200))
    split.new_window(0, "r1:1")
    assert {split.side(exchange(f"user-{i}")) for i in range(200)} == {"stable"}
    split.new_window(100, "r1:2")
    assert {split.side(exchange(f"user-{i}")) for i in range(200)} == {"candidate"}


def test_the_candidate_side_retries_on_the_stable_side() -> None:
    split = Split("candidate")
    cand, stable = deployment("candidate"), deployment("stable")
    assert split.allowed(cand, "candidate", []) and not split.allowed(stable, "candidate", [])
    assert split.allowed(stable, "candidate", [cand]) and not split.allowed(cand, "candidate",
                                                                            [cand])
    assert split.allowed(stable, "stable", []) and not split.allowed(cand, "stable", [])


def test_a_bad_candidate_fails_early_and_a_healthy_one_passes_at_the_end_of_the_hold() -> None:
    gates = GatesConfig(error_rate_max_percent=1.0, min_samples=20)
    split = Split("candidate")
    split.new_window(5, "r:0")
    cand, stable = deployment("candidate"), deployment("stable")
    for i in range(40):
        split.attempted(cand, failed=i % 10 == 0, ttft=0.05)
    verdict = judge(split, gates, hold_over=False)
    assert verdict.outcome == "fail" and "error rate 10.0%" in verdict.reason
    healthy = Split("candidate")
    healthy.new_window(5, "r:0")
    for i in range(200):
        healthy.attempted(cand, failed=i == 7, ttft=0.05)
        healthy.answered("candidate", refused=False)
        healthy.attempted(stable, failed=False, ttft=0.05)
        healthy.answered("stable", refused=False)
    assert judge(healthy, gates, hold_over=False).outcome == "wait"  # one error is no proof
    assert judge(healthy, gates, hold_over=True).outcome == "pass"


def test_slow_or_refusing_candidates_fail_against_the_stable_side() -> None:
    gates = GatesConfig(min_samples=10, ttft_p95_max_ratio=1.5, refusal_rate_max_ratio=2.0)
    cand, stable = deployment("candidate"), deployment("stable")
    slow = Split("candidate")
    slow.new_window(25, "r:1")
    for _ in range(50):
        slow.attempted(cand, False, 0.4)
        slow.answered("candidate", False)
        slow.attempted(stable, False, 0.1)
        slow.answered("stable", False)
    assert "ttft p95" in judge(slow, gates, hold_over=True).reason
    refusing = Split("candidate")
    refusing.new_window(25, "r:1")
    for i in range(50):
        refusing.attempted(cand, False, 0.1)
        refusing.answered("candidate", refused=i % 5 == 0)
        refusing.attempted(stable, False, 0.1)
        refusing.answered("stable", refused=False)
    assert "refusal rate 20.0%" in judge(refusing, gates, hold_over=True).reason
    waiting = Split("candidate")
    waiting.new_window(25, "r:1")
    waiting.answered("candidate", False)
    assert judge(waiting, gates, hold_over=True).outcome == "wait"


def test_wilson_bounds_contain_the_rate() -> None:
    low, high = wilson_bounds(5, 50)
    assert 0.04 < low < 0.1 < high < 0.22
    assert wilson_bounds(0, 0) == (0.0, 1.0)
    assert wilson_bounds(0, 100)[0] == 0.0
