"""Outlier detection, the retry budget and the window statistics, on a controlled clock."""

from __future__ import annotations

from ironhold.config.schema import FailureRateConfig, OutlierConfig
from ironhold.routing.budget import RetryBudget
from ironhold.routing.deployment import Deployment
from ironhold.routing.outlier import OutlierDetector
from ironhold.routing.stats import LatencyWindow, WindowCounter
from ironhold.telemetry.metrics import Metrics


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fleet(n: int) -> list[Deployment]:
    return [Deployment(name=f"d{i}", group="g", upstream_model="m",
                       transport=None) for i in range(n)]  # type: ignore[arg-type]


def detector(deployments: list[Deployment], clock: Clock, **config: object) -> OutlierDetector:
    settings = {"consecutive_failures": 3, "base_ejection": 10.0, "max_ejection": 25.0,
                "max_ejection_percent": 50.0, "failure_rate": None, **config}
    return OutlierDetector("g", deployments, OutlierConfig.model_validate(settings), Metrics(),
                           clock=clock)


def test_consecutive_failures_eject_for_base_times_ejections_capped() -> None:
    clock = Clock()
    d0, d1 = fleet(2)
    outlier = detector([d0, d1], clock)
    for _ in range(2):
        outlier.failure(d0, "bad_gateway")
    outlier.success(d0)  # a success resets the run
    for _ in range(2):
        outlier.failure(d0, "bad_gateway")
    assert not d0.ejected
    outlier.failure(d0, "bad_gateway")
    assert d0.ejected and d0.ejected_until == clock.now + 10
    assert not outlier.admits(d0, clock.now)
    # Half-open after the ejection time: one probe, then nobody else until it answers.
    clock.now += 10
    assert outlier.admits(d0, clock.now)
    outlier.picked(d0)
    assert d0.probing and not outlier.admits(d0, clock.now)
    outlier.failure(d0, "bad_gateway")  # the probe failed: out again, for twice as long
    assert d0.ejected and d0.ejections == 2 and d0.ejected_until == clock.now + 20
    clock.now += 20
    outlier.picked(d0)
    outlier.failure(d0, "upstream_timeout")
    assert d0.ejected_until == clock.now + 25  # 3 x 10 capped at 25
    clock.now += 25
    outlier.picked(d0)
    outlier.success(d0)  # the probe passed: back in
    assert not d0.ejected and outlier.admits(d0, clock.now)


def test_a_cancelled_probe_may_be_sent_again() -> None:
    clock = Clock()
    d0, d1 = fleet(2)
    outlier = detector([d0, d1], clock, consecutive_failures=1)
    outlier.failure(d0, "bad_gateway")
    clock.now += 10
    outlier.picked(d0)
    outlier.abandoned(d0)
    assert outlier.admits(d0, clock.now)


def test_at_most_the_set_share_is_ejected_but_one_always_may_be() -> None:
    clock = Clock()
    four = fleet(4)
    outlier = detector(four, clock, consecutive_failures=1)
    for d in four:
        outlier.failure(d, "bad_gateway")
    assert sum(d.ejected for d in four) == 2  # 50% of 4
    single = fleet(1)
    lone = detector(single, clock, consecutive_failures=1, max_ejection_percent=0)
    lone.failure(single[0], "bad_gateway")
    assert single[0].ejected  # one deployment may always be ejected


def test_failure_rate_ejects_a_deployment_that_fails_often_but_not_in_a_row() -> None:
    clock = Clock()
    d0, d1 = fleet(2)
    rate = FailureRateConfig(threshold_percent=40, min_requests=10, window=10.0)
    outlier = detector([d0, d1], clock, consecutive_failures=100, failure_rate=rate)
    for i in range(9):
        if i % 2:
            outlier.failure(d0, "bad_gateway")
        else:
            outlier.success(d0)
    assert not d0.ejected  # 4 of 9, under min_requests
    outlier.failure(d0, "bad_gateway")
    assert d0.ejected  # 5 of 10 >= 40%


def test_after_a_long_healthy_spell_the_ejection_count_is_forgotten() -> None:
    clock = Clock()
    d0, d1 = fleet(2)
    outlier = detector([d0, d1], clock, consecutive_failures=1)
    outlier.failure(d0, "bad_gateway")
    clock.now += 10
    outlier.picked(d0)
    outlier.success(d0)
    assert d0.ejections == 1
    clock.now += 26
    outlier.success(d0)
    assert d0.ejections == 0


def test_retry_budget_is_a_share_of_requests_plus_a_floor() -> None:
    clock = Clock()
    budget = RetryBudget(percent=20, min_per_second=0.5, window=10.0, clock=clock)
    for _ in range(100):
        budget.on_request()
    spent = 0
    while budget.try_spend():
        spent += 1
    assert spent == 25  # 20% of 100 + 0.5/s over 10 s
    clock.now += 11  # the window slides on: requests and retries both expire
    assert budget.try_spend() and sum(budget.try_spend() for _ in range(10)) == 4


def test_window_counter_and_latency_percentile() -> None:
    clock = Clock()
    counter = WindowCounter(10.0, clock=clock)
    counter.add(3)
    clock.now += 5
    counter.add(2)
    assert counter.total() == 5
    clock.now += 6
    assert counter.total() == 2
    window = LatencyWindow(95.0, size=100)
    for i in range(1, 101):
        window.add(i / 1000)
    assert window.value() == 0.095
    for _ in range(100):
        window.add(1.0)
    assert window.value() == 1.0  # old samples rolled out
