"""A rollout's split of one model group's traffic, and the gates that judge a step.

``Split`` is what the router sees: which side a request is on (a key or session sticks to one
side for a step), which deployments an attempt may go to (a candidate-side request that fails
on the candidate is retried on the stable side), and what each side's attempts and answers
were since the step began. ``judge`` compares the sides over that window. The controller that
moves the steps (``routing.rollouts``) owns the split and changes its ``percent``.
"""

from __future__ import annotations

import math
import random
import zlib
from dataclasses import dataclass, field
from typing import Literal

from ironhold.config.changes import GatesConfig
from ironhold.core.exchange import Exchange
from ironhold.routing.deployment import Deployment
from ironhold.routing.stats import nearest_rank

__all__ = ["Side", "SideStats", "Split", "Verdict", "judge", "wilson_bounds"]

Side = Literal["candidate", "stable"]
#: TTFT samples kept per side and step (a uniform reservoir beyond).
_RESERVOIR = 4096


@dataclass(slots=True)
class SideStats:
    """One side's attempts and answers since the step began."""

    attempts: int = 0
    failures: int = 0
    answers: int = 0
    refusals: int = 0
    ttft: list[float] = field(default_factory=list)
    _seen: int = 0

    def attempted(self, failed: bool, ttft: float | None) -> None:
        self.attempts += 1
        self.failures += failed
        if ttft is not None:
            self._seen += 1
            if len(self.ttft) < _RESERVOIR:
                self.ttft.append(ttft)
            else:
                slot = random.randrange(self._seen)
                if slot < _RESERVOIR:
                    self.ttft[slot] = ttft

    def answered(self, refused: bool) -> None:
        self.answers += 1
        self.refusals += refused

    def ttft_p95(self) -> float | None:
        return nearest_rank(sorted(self.ttft), 0.95) if self.ttft else None

    def as_json(self) -> dict[str, object]:
        p95 = self.ttft_p95()
        return {"attempts": self.attempts, "failures": self.failures, "answers": self.answers,
                "refusals": self.refusals,
                "ttft_p95_ms": None if p95 is None else round(p95 * 1000, 1)}


class Split:
    """The candidate's share of its group's traffic, as the router applies it."""

    def __init__(self, candidate: str):
        self.candidate = candidate
        #: Percent of requests (keys, sessions) on the candidate side; 0 sends none.
        self.percent = 0.0
        #: Changes with every step, so a key's side is drawn again at each step.
        self.step_key = ""
        self.stats: dict[Side, SideStats] = {"candidate": SideStats(), "stable": SideStats()}

    def new_window(self, percent: float, step_key: str) -> None:
        self.percent = percent
        self.step_key = step_key
        self.stats = {"candidate": SideStats(), "stable": SideStats()}

    def side(self, exchange: Exchange) -> Side:
        """The request's side: sticky per session (the body's ``user``) or key for a step."""
        if self.percent <= 0:
            return "stable"
        if self.percent >= 100:
            return "candidate"
        user = exchange.body.get("user")
        if isinstance(user, str) and user:
            who = user
        elif exchange.principal is not None:
            who = exchange.principal.id
        else:
            who = exchange.request_id
        bucket = zlib.crc32(f"{self.step_key}:{who}".encode()) % 10_000
        return "candidate" if bucket < self.percent * 100 else "stable"

    def allowed(self, d: Deployment, side: str | None, tried: list[Deployment]) -> bool:
        """May an attempt of a request on ``side`` go to ``d``? The candidate side's first
        attempt goes to the candidate; its retries and hedges to the stable side."""
        is_candidate = d.name == self.candidate
        if side == "candidate" and not any(t.name == self.candidate for t in tried):
            return is_candidate
        return not is_candidate

    def attempted(self, d: Deployment, failed: bool, ttft: float | None) -> None:
        self.stats["candidate" if d.name == self.candidate else "stable"].attempted(failed, ttft)

    def answered(self, deployment: str, refused: bool) -> None:
        self.stats["candidate" if deployment == self.candidate else "stable"].answered(refused)


@dataclass(frozen=True, slots=True)
class Verdict:
    #: ``pass``: every gate holds with enough samples; ``fail``: one gate failed;
    #: ``wait``: not enough samples yet (or nothing failed before the hold is over).
    outcome: Literal["pass", "fail", "wait"]
    reason: str
    evidence: dict[str, object]


def judge(split: Split, gates: GatesConfig, hold_over: bool) -> Verdict:
    """Compare the candidate with the stable side over the step's window.

    The error-rate gate fails as soon as the candidate's error rate is above the limit with
    high confidence (its Wilson interval's lower bound, z=3, over at least ``min_samples``
    attempts): a bad candidate is rolled back within moments of taking traffic, while a
    healthy one is not failed by one unlucky error. At the
    end of the hold, with enough samples on both sides, every gate is judged on its estimate.
    """
    cand, stable = split.stats["candidate"], split.stats["stable"]
    evidence: dict[str, object] = {"candidate": cand.as_json(), "stable": stable.as_json(),
                                   "percent": split.percent}
    limit = gates.error_rate_max_percent / 100
    # Judged every second, so the bound is strict (z=3): a healthy candidate is not failed
    # by the luck of the draw across many looks, and never on fewer than min_samples.
    low, _ = wilson_bounds(cand.failures, cand.attempts, z=3.0)
    if cand.attempts >= gates.min_samples and low > limit:
        return Verdict("fail", f"error rate {cand.failures / cand.attempts:.1%} over "
                               f"{cand.attempts} attempts is above "
                               f"{gates.error_rate_max_percent:g}%", evidence)
    need = gates.min_samples
    enough = cand.answers >= need and (stable.answers >= need or split.percent >= 100)
    if not hold_over or not enough:
        return Verdict("wait", "holding" if enough else
                       f"waiting for {need} answers on each side", evidence)
    if cand.attempts and cand.failures / cand.attempts > limit:
        return Verdict("fail", f"error rate {cand.failures / cand.attempts:.1%} is above "
                               f"{gates.error_rate_max_percent:g}%", evidence)
    if gates.ttft_p95_max_ratio is not None and split.percent < 100:
        c95, s95 = cand.ttft_p95(), stable.ttft_p95()
        if c95 is not None and s95 is not None and \
                c95 > gates.ttft_p95_max_ratio * max(s95, gates.ttft_floor):
            return Verdict("fail", f"ttft p95 {c95 * 1000:.0f} ms is over "
                                   f"{gates.ttft_p95_max_ratio:g}x the stable side's "
                                   f"{s95 * 1000:.0f} ms", evidence)
    if gates.refusal_rate_max_ratio is not None and split.percent < 100:
        c_rate = cand.refusals / cand.answers
        s_rate = max(stable.refusals / max(stable.answers, 1), 0.01)
        if c_rate > gates.refusal_rate_max_ratio * s_rate:
            return Verdict("fail", f"refusal rate {c_rate:.1%} is over "
                                   f"{gates.refusal_rate_max_ratio:g}x the stable side's "
                                   f"{s_rate:.1%}", evidence)
    return Verdict("pass", "every gate held", evidence)


def wilson_bounds(successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion (0, 1 with no trials)."""
    if trials <= 0:
        return 0.0, 1.0
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    margin = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - margin), min(1.0, centre + margin)
