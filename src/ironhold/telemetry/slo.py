"""Service-level objectives and multiwindow, multi-burn-rate alerts (the SRE workbook's).

Per model group with an ``slo``, three SLIs: ``availability`` (requests without a server
fault), ``ttft`` (streams whose first token came within ``ttft_p95``: 95% should) and
``latency`` (requests complete within ``latency_p99``: 99% should). Each request adds to
per-minute counts kept for three days (the slowest alert's window) and per-hour counts kept
for the SLO's window (the budget left). The burn rate over a window is its error ratio divided
by the error budget (``1 - objective``); an alert fires when both its long and its short window
burn faster than its factor. ``ironhold slo rules`` writes the same alerts as Prometheus rules
over ``ironhold_slo_events_total``.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass

from ironhold.config.telemetry import SloConfig

__all__ = ["ALERTS", "BurnAlert", "SloTracker", "objectives"]

_MINUTES = 3 * 24 * 60


@dataclass(frozen=True, slots=True)
class BurnAlert:
    severity: str
    factor: float
    long: int  # seconds
    short: int

    @property
    def name(self) -> str:
        return f"{_span(self.long)}/{_span(self.short)}"


#: The SRE workbook's recommended set (chapter 5, "Alerting on SLOs").
ALERTS = (
    BurnAlert("page", 14.4, 3600, 300),
    BurnAlert("page", 6.0, 6 * 3600, 1800),
    BurnAlert("ticket", 1.0, 3 * 86400, 6 * 3600),
)


def _span(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def objectives(slo: SloConfig) -> dict[str, tuple[float, float | None]]:
    """SLI name → (objective as a fraction, threshold in seconds or None)."""
    out: dict[str, tuple[float, float | None]] = {"availability": (slo.availability / 100,
                                                                   None)}
    if slo.ttft_p95 is not None:
        out["ttft"] = (0.95, slo.ttft_p95)
    if slo.latency_p99 is not None:
        out["latency"] = (0.99, slo.latency_p99)
    return out


class _Counts:
    """Good and bad events in a ring of fixed-width buckets."""

    __slots__ = ("_bad", "_index", "_total", "_width")

    def __init__(self, buckets: int, width: int):
        self._width = width
        self._total = array("q", bytes(8 * buckets))
        self._bad = array("q", bytes(8 * buckets))
        #: The absolute bucket number each slot holds now.
        self._index = array("q", [-1] * buckets)

    def add(self, bad: bool, now: float) -> None:
        self.add_at(bad, int(now // self._width))

    def add_at(self, bad: bool, n: int) -> None:
        """Count one event in absolute bucket ``n``."""
        slot = n % len(self._total)
        if self._index[slot] != n:
            self._index[slot] = n
            self._total[slot] = 0
            self._bad[slot] = 0
        self._total[slot] += 1
        self._bad[slot] += bad

    def window(self, seconds: int, now: float) -> tuple[int, int]:
        """(events, bad events) in the last ``seconds`` (whole buckets)."""
        newest = int(now // self._width)
        oldest = newest - max(1, seconds // self._width) + 1
        total = bad = 0
        size = len(self._total)
        for n in range(max(oldest, newest - size + 1), newest + 1):
            slot = n % size
            if self._index[slot] == n:
                total += self._total[slot]
                bad += self._bad[slot]
        return total, bad


@dataclass(slots=True)
class Burn:
    sli: str
    objective: float
    #: Error ratio and burn rate per alert window (``1h``, ``5m``...).
    burn: dict[str, float]
    firing: list[BurnAlert]
    budget_left: float | None
    events: int


class SloTracker:
    """One model group's SLIs."""

    def __init__(self, slo: SloConfig, min_events: int = 20):
        self.slo = slo
        self._objectives = objectives(slo)
        self._min = min_events
        hours = max(1, int(slo.window // 3600))
        self._minutes = {sli: _Counts(_MINUTES, 60) for sli in self._objectives}
        self._hours = {sli: _Counts(hours, 3600) for sli in self._objectives}
        #: Good and bad events since start, per SLI (``ironhold_slo_events_total``).
        self.totals = {sli: [0, 0] for sli in self._objectives}
        self._ttft = slo.ttft_p95
        self._latency = slo.latency_p99

    @property
    def slis(self) -> tuple[str, ...]:
        return tuple(self._objectives)

    def threshold(self, sli: str) -> float | None:
        return self._objectives[sli][1]

    def add(self, sli: str, bad: bool, now: float) -> None:
        if sli in self._minutes:
            self._tally(sli, bad, int(now // 60), int(now // 3600))

    def record(self, now: float, server_fault: bool, ttft: float | None,
               latency: float) -> None:
        """One request that counts for the SLOs (not a client's own error): availability, and
        for an answer its latency and (a stream's) time to first token."""
        minute, hour = int(now // 60), int(now // 3600)
        self._tally("availability", server_fault, minute, hour)
        if server_fault:
            return
        if ttft is not None and self._ttft is not None:
            self._tally("ttft", ttft > self._ttft, minute, hour)
        if self._latency is not None:
            self._tally("latency", latency > self._latency, minute, hour)

    def _tally(self, sli: str, bad: bool, minute: int, hour: int) -> None:
        self._minutes[sli].add_at(bad, minute)
        self._hours[sli].add_at(bad, hour)
        self.totals[sli][bad] += 1

    def burns(self, now: float) -> list[Burn]:
        out = []
        for sli, (objective, _) in self._objectives.items():
            budget = 1 - objective
            minutes = self._minutes[sli]
            rates: dict[str, float] = {}
            firing = []
            events = 0
            for alert in ALERTS:
                burning = True
                for seconds in (alert.long, alert.short):
                    total, bad = minutes.window(seconds, now)
                    rate = (bad / total / budget) if total else 0.0
                    rates[_span(seconds)] = round(rate, 3)
                    if seconds == alert.long:
                        events = max(events, total)
                        burning = burning and total >= self._min
                    burning = burning and rate >= alert.factor
                if burning:
                    firing.append(alert)
            total, bad = self._hours[sli].window(int(self.slo.window), now)
            left = 1 - (bad / total) / budget if total else None
            out.append(Burn(sli, objective, rates, firing, left, events))
        return out
