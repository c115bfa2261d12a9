"""The detectors on synthetic traffic with explicit times: spikes, rises, drift and SLO burn."""

from __future__ import annotations

import math
import random

import pytest
from scipy.stats import chi2

from ironhold.config.telemetry import SloConfig
from ironhold.telemetry.answers import AnswerFacts
from ironhold.telemetry.detectors import RateBank, RateSubject, SpikeDetector
from ironhold.telemetry.drift import DriftDetector, chi2_sf, features_of
from ironhold.telemetry.outcome import CallOutcome, prompt_features, script_of
from ironhold.telemetry.slo import SloTracker


def heavy_tailed(rng: random.Random, median: float) -> float:
    """Log-normal around ``median`` with 2% of requests 50 times slower (a heavy tail)."""
    value = median * math.exp(rng.gauss(0, 0.5))
    return value * 50 if rng.random() < 0.02 else value


def test_a_5x_ttft_spike_is_called_within_30_seconds_and_ends() -> None:
    rng = random.Random(7)
    detector = SpikeDetector(window=15, baseline=600, factor=3, min_samples=20)
    now = 0.0
    while now < 600:  # ten steady minutes at 10 requests/s
        detector.add(heavy_tailed(rng, 0.2), now)
        now += 0.1
        if round(now * 10) % 20 == 0:
            verdict = detector.judge(now)
            assert verdict is None or not verdict.firing, (now, verdict)
    onset = now
    called = None
    while now < onset + 60:
        detector.add(heavy_tailed(rng, 1.0), now)  # 5x
        now += 0.1
        if round(now * 10) % 20 == 0:
            verdict = detector.judge(now)
            if verdict is not None and verdict.firing:
                called = now
                break
    assert called is not None and called - onset <= 30, called
    assert verdict is not None and verdict.evidence["ratio"] >= 3
    # The onset it reports is the slot in which the slowdown began (5-second slots).
    assert verdict.onset is not None and onset - 5 <= verdict.onset <= onset + 5
    while now < called + 60:  # back to normal
        detector.add(heavy_tailed(rng, 0.2), now)
        now += 0.1
    verdict = detector.judge(now)
    assert verdict is not None and not verdict.firing


def test_a_steady_heavy_tail_for_ten_minutes_is_no_spike() -> None:
    for seed in range(5):
        rng = random.Random(seed)
        detector = SpikeDetector(window=15, baseline=600, factor=3, min_samples=20)
        now = 0.0
        while now < 1200:
            detector.add(heavy_tailed(rng, 0.05), now)
            now += 0.05
            if round(now * 20) % 40 == 0:
                verdict = detector.judge(now)
                assert verdict is None or not verdict.firing, (seed, now, verdict)


def test_spike_memory_is_bounded_by_its_slots() -> None:
    detector = SpikeDetector(window=15, baseline=60, factor=3, min_samples=20)
    for i in range(200_000):
        detector.add(0.1, i * 0.01)  # 2,000 s of traffic
    assert len(detector) <= 3 + 12 + 1


def test_a_rise_in_errors_is_called_and_a_steady_rate_is_not() -> None:
    rng = random.Random(3)
    # Two properties of the same requests: errors rise, refusals stay as they were.
    bank = RateBank([RateSubject("errors", floor=0.01), RateSubject("refusals")],
                    window=15, baseline=600, min_samples=20)
    now = 0.0
    while now < 600:  # 1% errors, 5% refusals
        bank.add(now, *[i for i, p in enumerate((0.01, 0.05)) if rng.random() < p])
        now += 0.1
        if round(now * 10) % 20 == 0:
            verdicts = bank.judge(now)
            assert not any(v is not None and v.firing for v in verdicts), (now, verdicts)
    onset = now
    verdict = refusals = None
    while now < onset + 30:  # 20% errors
        bank.add(now, *[i for i, p in enumerate((0.2, 0.05)) if rng.random() < p])
        now += 0.1
        if round(now * 10) % 20 == 0:
            verdict, refusals = bank.judge(now)
            if verdict is not None and verdict.firing:
                break
    assert verdict is not None and verdict.firing and now - onset < 15
    assert verdict.onset is not None and onset - 5 <= verdict.onset <= onset + 5
    assert refusals is not None and not refusals.firing
    assert verdict.evidence["recent_rate"] >= 2 * max(verdict.evidence["baseline_rate"], 0.01)


@pytest.mark.parametrize("dof", [1, 2, 3, 5, 10, 24])
def test_chi2_survival_matches_scipy(dof: int) -> None:
    for x in (0.01, 0.5, 1, dof, 2 * dof, 5 * dof + 10, 80, 200):
        assert chi2_sf(x, dof) == pytest.approx(float(chi2.sf(x, dof)), rel=1e-6, abs=1e-300)


def outcome(prompt: str, answer: str, finish: str = "stop", ttft: float = 0.1) -> CallOutcome:
    chars, script = prompt_features({"messages": [{"role": "user", "content": prompt}]})
    facts = AnswerFacts.of_answer({"choices": [{"message": {"content": answer},
                                                "finish_reason": finish}]})
    return CallOutcome(at=0, request_id="r", operation="chat", model="chat", deployment="d",
                       latency=0.2, ttft=ttft, status=200, outcome="ok", fault="",
                       principal=None, tenant=None, facts=facts, prompt_chars=chars,
                       script=script, guard_blocked=None, guard_notes=(), policy=None,
                       limit_refused=None, audit_seq=None, trace_id=None)


QUESTIONS = ["What is the capital of France?", "How do I reset my password?",
             "Summarise this paragraph for me please.", "Is it going to rain tomorrow?",
             "Which plan includes support?", "Translate 'hello' to Spanish."]
CODE = ["def parse(x):\n    return {k: v for (k, v) in x.items() if v}  # (why?)",
        "```python\nfor i in range(10):\n    print(i)\n```",
        "function f(a) { return a.map((x) => x * 2); }"]


def english(rng: random.Random) -> CallOutcome:
    return outcome(rng.choice(QUESTIONS), " ".join(["word"] * rng.randint(5, 40)),
                   ttft=0.1 * math.exp(rng.gauss(0, 0.3)))


def test_drift_is_called_within_500_requests_of_a_switch_and_not_on_steady_traffic() -> None:
    rng = random.Random(11)
    detector = DriftDetector(reference=1000, window=300, p_value=1e-4)
    for i in range(10_000):
        features = features_of(english(rng))
        assert features is not None
        detector.add(features)
        if i % 25 == 0:
            result = detector.judge()
            assert result is None or not result.drifted, (i, result)
    called = None
    for i in range(500):
        features = features_of(outcome(rng.choice(CODE) * rng.randint(2, 8),
                                       "x" * rng.randint(200, 2000), ttft=0.1))
        assert features is not None
        detector.add(features)
        if i % 25 == 24:
            result = detector.judge()
            if result is not None and result.drifted:
                called = i + 1
                break
    assert called is not None and called <= 500
    assert result is not None and result.p_value < 1e-4
    assert detector.memory_items() < 2000


def test_another_language_is_drift_too() -> None:
    rng = random.Random(5)
    detector = DriftDetector(reference=1000, window=300, p_value=1e-4)
    for _ in range(1500):
        detector.add(features_of(english(rng)))  # type: ignore[arg-type]
    assert not (detector.judge() or pytest.fail("no judgement")).drifted
    russian = ["Какая столица Франции?", "Как сбросить пароль?", "Будет ли завтра дождь?"]
    for _ in range(300):
        detector.add(features_of(outcome(rng.choice(russian), " ".join(  # type: ignore[arg-type]
            ["слово"] * rng.randint(5, 40)))))
    result = detector.judge()
    assert result is not None and result.drifted
    assert result.feature == "script"


def test_scripts() -> None:
    assert script_of("Hello there") == "latin"
    assert script_of("Привет, как дела?") == "cyrillic"
    assert script_of("東京はどこですか") == "cjk"
    assert script_of("مرحبا") == "arabic"
    assert script_of("```python\nprint(1)\n```") == "code"
    assert script_of("") == "none"


def test_slo_burn_fires_the_fast_page_and_reports_the_budget() -> None:
    tracker = SloTracker(SloConfig(availability=99.9, latency_p99=10.0))
    start = 1_000_000.0
    # An hour at 1 request/s, 2% failing: a burn of 20x (above 14.4) on both 1h and 5m.
    for i in range(3600):
        tracker.add("availability", i % 50 == 0, start + i)
        tracker.add("latency", False, start + i)
    burns = {b.sli: b for b in tracker.burns(start + 3600)}
    availability = burns["availability"]
    # The slower windows hold only this hour so far: they burn as fast.
    assert [a.name for a in availability.firing] == ["1h/5m", "6h/30m", "3d/6h"]
    assert availability.burn["1h"] == pytest.approx(20, rel=0.1)
    assert availability.budget_left is not None and availability.budget_left < 0
    assert burns["latency"].firing == []
    assert burns["latency"].budget_left == 1.0
    # Five quiet minutes later the 5m window no longer burns: the page stops.
    for i in range(3600, 3960):
        tracker.add("availability", False, start + i)
    assert {a.name for a in tracker.burns(start + 3960)[0].firing} == {"6h/30m", "3d/6h"}


def test_slo_counts_roll_over_in_fixed_rings() -> None:
    """A year of minutes later, the windows count exactly what they cover."""
    tracker = SloTracker(SloConfig(availability=99.0, window=30 * 86400.0))
    minutes = 365 * 24 * 60
    for i in range(minutes):
        tracker.add("availability", i >= minutes - 60, i * 60.0 + 1)  # the last hour fails
    burn = tracker.burns((minutes - 1) * 60.0 + 30)[0]  # during the last minute
    assert burn.events == 3 * 24 * 60  # the 3d window
    assert burn.burn["1h"] == pytest.approx(100)  # all bad / 1% budget
    assert burn.burn["3d"] == pytest.approx(60 / 4320 * 100, abs=1e-3)  # rounded
    # 60 bad in 30 days of 43,200: 0.14% of requests, 14% of the 1% budget.
    assert burn.budget_left == pytest.approx(1 - 60 / 43200 / 0.01)
