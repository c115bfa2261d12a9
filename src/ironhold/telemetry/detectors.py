"""Online detectors over time slots: a recent window judged against a baseline before it.

``SpikeDetector`` watches a latency (time to first token, total latency) with a t-digest per
slot (``fastdigest``: a bounded sketch, never a list of samples) and calls a spike when the
recent median is ``factor`` times the baseline's median and above its 90th percentile: a
heavy tail moves the upper quantiles, not the median of a window, so it is not a spike.
``RateBank`` counts kinds of event among requests (errors, empty answers, refusals...) and
calls a rise of one when the recent rate is at least twice the baseline's and four standard
deviations above it. Slots seen while a detector fires are left out of its baseline, so a long
incident does not become the normal it is judged against.

Memory is bounded by the number of slots (``(window + baseline) / slot``), whatever the
traffic.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastdigest import TDigest

__all__ = ["RateBank", "RateSubject", "SpikeDetector", "Verdict"]

#: Slots a recent window is cut into.
_RECENT_SLOTS = 3
#: Centroids per slot's digest at most.
_CENTROIDS = 200


@dataclass(slots=True)
class Verdict:
    """``firing``: the condition holds; None from ``judge`` means there is not enough data."""

    firing: bool
    evidence: dict[str, Any] = field(default_factory=dict)
    #: When a condition that just began first showed: the start of the first recent slot in
    #: which it held (Unix seconds); None when it did not just begin.
    onset: float | None = None


class _Slotted:
    def __init__(self, window: float, baseline: float, min_samples: int):
        self._width = window / _RECENT_SLOTS
        self._keep = _RECENT_SLOTS + max(1, math.ceil(baseline / self._width))
        self._min = min_samples

    def _index(self, now: float) -> int:
        return int(now / self._width)


class SpikeDetector(_Slotted):
    """A latency's recent median against its baseline."""

    def __init__(self, window: float, baseline: float, factor: float, min_samples: int,
                 floor: float = 0.005):
        super().__init__(window, baseline, min_samples)
        self._factor = factor
        #: Spikes smaller than this (seconds) are noise whatever the ratio.
        self._floor = floor
        #: ``[slot index, digest, seen while firing]``, oldest first.
        self._slots: deque[list[Any]] = deque()
        self.firing = False

    def add(self, seconds: float, now: float) -> None:
        index = self._index(now)
        slots = self._slots
        if not slots or slots[-1][0] != index:
            slots.append([index, TDigest(_CENTROIDS), self.firing])
            while slots[0][0] <= index - self._keep:
                slots.popleft()
        slots[-1][1].update(seconds)

    def judge(self, now: float) -> Verdict | None:
        first_recent = self._index(now) - _RECENT_SLOTS + 1
        recent = [s[1] for s in self._slots if s[0] >= first_recent]
        base = [s[1] for s in self._slots
                if first_recent - self._keep < s[0] < first_recent and not s[2]]
        if not recent:
            # No traffic any more: nothing to say it still holds.
            return Verdict(False, {"reason": "no recent requests"}) if self.firing else None
        current = _merged(recent)
        baseline = _merged(base) if base else None
        if (current.n_values < self._min or baseline is None
                or baseline.n_values < 3 * self._min):
            return None
        median, base_median = current.quantile(0.5), baseline.quantile(0.5)
        base_p90 = baseline.quantile(0.9)
        evidence = {"recent_p50_ms": round(median * 1000, 2),
                    "baseline_p50_ms": round(base_median * 1000, 2),
                    "baseline_p90_ms": round(base_p90 * 1000, 2),
                    "ratio": round(median / base_median, 2) if base_median > 0 else None,
                    "recent_samples": int(current.n_values),
                    "baseline_samples": int(baseline.n_values)}
        onset = None
        if self.firing:
            # Hysteresis: it ends once the median is back within half the factor.
            holds = median >= (1 + (self._factor - 1) / 2) * base_median
        else:
            holds = (median >= self._factor * base_median and median >= base_p90
                     and median - base_median >= self._floor)
            if holds:
                onset = _onset(self._slots, self._width, lambda s: s[1].quantile(0.5)
                               >= self._factor * base_median)
        self.firing = holds
        return Verdict(holds, evidence, onset)

    def __len__(self) -> int:
        return len(self._slots)


@dataclass(frozen=True, slots=True)
class RateSubject:
    name: str
    #: The baseline rate is taken as at least this (a rare event's rise from 0 to 0.1% is no
    #: signal).
    floor: float = 0.02
    #: Judge against ``floor`` alone before any baseline exists (errors: a new gateway failing
    #: from its first minute is news).
    cold_start: bool = False


class RateBank(_Slotted):
    """Several properties of the same requests (errors, empty answers, refusals...), each a
    share of requests judged recent against baseline. One slot list serves them all, so a
    request costs one slot lookup and an addition per property it has."""

    def __init__(self, subjects: Sequence[RateSubject], window: float, baseline: float,
                 min_samples: int):
        super().__init__(window, baseline, min_samples)
        self.subjects = tuple(subjects)
        self._firing = [False] * len(self.subjects)
        #: ``[slot index, firing mask when opened, requests, events of subject 0, ...]``.
        self._slots: deque[list[int]] = deque()

    def add(self, now: float, *events: int) -> None:
        """One request at ``now`` that had the properties numbered ``events``."""
        index = int(now / self._width)
        slots = self._slots
        if not slots or slots[-1][0] != index:
            mask = sum(1 << i for i, firing in enumerate(self._firing) if firing)
            slots.append([index, mask, 0, *(0 for _ in self.subjects)])
            while slots[0][0] <= index - self._keep:
                slots.popleft()
        last = slots[-1]
        last[2] += 1
        for event in events:
            last[3 + event] += 1

    def judge(self, now: float) -> list[Verdict | None]:
        first_recent = self._index(now) - _RECENT_SLOTS + 1
        return [self._judge(i, subject, first_recent)
                for i, subject in enumerate(self.subjects)]

    def _judge(self, i: int, subject: RateSubject, first_recent: int) -> Verdict | None:
        n = k = bn = bk = 0
        bit = 1 << i
        for slot in self._slots:
            if slot[0] >= first_recent:
                n += slot[2]
                k += slot[3 + i]
            elif not slot[1] & bit:  # seen while this subject fired: not the baseline
                bn += slot[2]
                bk += slot[3 + i]
        firing = self._firing[i]
        if n == 0:
            if firing:
                self._firing[i] = False
                return Verdict(False, {"reason": "no recent requests"})
            return None
        if n < self._min or (bn < self._min and not subject.cold_start):
            return None
        base_rate = bk / bn if bn else 0.0
        p0 = max(base_rate, subject.floor)
        rate = k / n
        z = (k - n * p0) / math.sqrt(n * p0 * (1 - p0)) if p0 < 1 else 0.0
        evidence = {"recent_rate": round(rate, 4), "baseline_rate": round(base_rate, 4),
                    "recent_events": k, "recent_requests": n, "baseline_requests": bn,
                    "z": round(z, 2)}
        # Hysteresis: a rise ends once the rate is back under 1.5 times the baseline's.
        holds = ((rate >= 1.5 * p0 and z >= 2) if firing
                 else (k >= 5 and rate >= 2 * p0 and z >= 4))
        onset = None
        if holds and not firing:
            onset = _onset(self._slots, self._width,
                           lambda slot: bool(slot[2]) and slot[3 + i] >= 2 * p0 * slot[2])
        self._firing[i] = holds
        return Verdict(holds, evidence, onset)

    def __len__(self) -> int:
        return len(self._slots)


def _onset(slots: deque[Any], width: float, holds: Callable[[Any], bool]) -> float:
    """The start of the earliest slot of the run of slots, ending with the newest, in which
    the condition holds: when it began, however long it took to be noticed."""
    start = slots[-1][0]
    for slot in reversed(slots):
        if not holds(slot):
            break
        start = slot[0]
    return float(start * width)


def _merged(digests: list[TDigest]) -> TDigest:
    if len(digests) == 1:
        return digests[0]
    out = digests[0].copy()
    for other in digests[1:]:
        out.merge_inplace(other)
    return out
