"""What limits count, how, and the in-process store for one node.

A request counts against several counters at once (its key, its tenant, every passport in its
chain), each with a ``Quota``. Admission checks all of them and, only if every one has room,
counts the request in all of them: one atomic step, so concurrent requests can never jointly
overshoot. The Redis store (``limits.redis``) runs the same algorithm in one Lua script.

- Requests and tokens per minute: a sliding 60-second window of 1-second buckets. A request
  leaves the window when its whole second is older than 60 s, so the window is 60 to 61 s long:
  never more than the limit in any 60 s, at most one second stricter.
- Tokens are reserved at admission (the prompt estimate plus the completion allowance) and
  settled with the real usage afterwards.
- Concurrency: leases with an expiry, so a replica that dies cannot hold slots for ever.
- Budgets: micro-dollars per calendar day and month (UTC), reserved and settled like tokens.
"""

from __future__ import annotations

import calendar
import itertools
import math
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from ironhold.core.principal import Quota

WINDOW = 60


class StoreUnavailableError(Exception):
    """The store could not answer: unreachable, or no connection free within the bound. Only
    this is a store failure that ``limits.on_store_error`` may choose to admit through."""


class LeaseIds:
    """Concurrency lease ids: the server's own, unique per admission. A random prefix (unique
    across replicas) and a counter: cheaper on the hot path than a random id each."""

    __slots__ = ("_numbers", "_prefix")

    def __init__(self) -> None:
        self._prefix = "l" + secrets.token_hex(8) + "-"
        self._numbers = itertools.count()

    def next(self) -> str:
        return f"{self._prefix}{next(self._numbers)}"


@dataclass(frozen=True, slots=True)
class Charge:
    """One counter a request counts against."""

    counter: str
    quota: Quota


@dataclass(frozen=True, slots=True)
class Ask:
    #: The concurrency lease's id (``new_lease_id``), released again by ``settle``.
    lease_id: str
    #: Tokens reserved: the prompt estimate plus the completion allowance.
    tokens: int
    #: Cost reserved, in micro-dollars.
    cost_micros: int
    #: Unix time of admission (the caller's clock, so every replica buckets alike).
    now: float
    #: When a concurrency lease lapses if never released.
    lease_ttl: float = 660.0


@dataclass(frozen=True, slots=True)
class RateState:
    """For the ``x-ratelimit-*`` headers: the tightest counter of one kind."""

    limit: int
    remaining: int
    #: Seconds until the window has forgotten everything in it now.
    reset: float


@dataclass(frozen=True, slots=True)
class Admission:
    allowed: bool
    #: Which limit refused: ``rpm``, ``tpm``, ``concurrency``, ``budget_usd_daily`` or
    #: ``budget_usd_monthly``; and on which counter.
    refused_by: str | None = None
    counter: str | None = None
    retry_after: float = 0.0
    requests: RateState | None = None
    tokens: RateState | None = None
    #: The least budget left (micro-dollars) over the counters that have one, after this
    #: request's reservation; None if no budget applies.
    budget_left_micros: int | None = None


class LimitStore(Protocol):
    async def admit(self, charges: Sequence[Charge], ask: Ask) -> Admission: ...

    async def settle(self, charges: Sequence[Charge], lease_id: str, admitted_at: float,
                     token_delta: int, cost_delta_micros: int, now: float) -> None:
        """Correct the reservation made at ``admitted_at`` by the real usage, and release the
        concurrency lease."""

    async def budget_left(self, charges: Sequence[Charge], now: float) -> int | None: ...

    async def close(self) -> None: ...


def day_of(now: float) -> int:
    return int(now // 86400)


def month_of(now: float) -> int:
    t = time.gmtime(now)
    return t.tm_year * 100 + t.tm_mon


def until_next_day(now: float) -> float:
    return (day_of(now) + 1) * 86400 - now


def until_next_month(now: float) -> float:
    t = time.gmtime(now)
    year, month = (t.tm_year + 1, 1) if t.tm_mon == 12 else (t.tm_year, t.tm_mon + 1)
    return calendar.timegm((year, month, 1, 0, 0, 0, 0, 0, 0)) - now


def micros(usd: float) -> int:
    return round(usd * 1_000_000)


class _Window:
    """A sliding 60 s window of 1 s buckets."""

    __slots__ = ("buckets",)

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}

    def used(self, now: float) -> int:
        # A bucket leaves once its *last* instant is 60 s old: second S at S + 61.
        floor = math.floor(now) - WINDOW - 1
        stale = [s for s in self.buckets if s <= floor]
        for second in stale:
            del self.buckets[second]
        return max(0, sum(self.buckets.values()))

    def add(self, now: float, amount: int) -> None:
        second = math.floor(now)
        self.buckets[second] = self.buckets.get(second, 0) + amount

    def settle(self, at: float, now: float, amount: int) -> None:
        second = math.floor(at)
        if second > math.floor(now) - WINDOW - 1 and second in self.buckets:
            self.buckets[second] += amount

    def wait_for(self, now: float, excess: int) -> float:
        """Seconds until ``excess`` units have left the window."""
        freed = 0
        for second in sorted(self.buckets):
            freed += self.buckets[second]
            if freed >= excess:
                return max(0.001, second + WINDOW + 1 - now)
        return float(WINDOW)

    def reset(self, now: float) -> float:
        return max(0.0, min(self.buckets) + WINDOW + 1 - now) if self.buckets else 0.0


class MemoryLimitStore:
    """Limits for one gateway process. Asyncio runs one step at a time, so admission is atomic
    without a lock."""

    def __init__(self) -> None:
        self._rpm: dict[str, _Window] = {}
        self._tpm: dict[str, _Window] = {}
        self._leases: dict[str, dict[str, float]] = {}
        self._spent: dict[tuple[str, str, int], int] = {}
        self._swept_at = 0.0

    def counters(self) -> int:
        """How many counters are held now (every passport has its own)."""
        return len(self._rpm) + len(self._tpm) + len(self._leases) + len(self._spent)

    def _sweep(self, now: float) -> None:
        """Forget what can no longer refuse anything: windows and lease sets that emptied,
        budgets of past days and months. Once a window, so memory follows the counters in
        use, not every passport ever minted; the cost is amortised over a minute of calls."""
        self._swept_at = now
        for windows in (self._rpm, self._tpm):
            for counter in [c for c, w in windows.items() if w.used(now) == 0 and
                            not w.buckets]:
                del windows[counter]
        for counter in [c for c, leases in self._leases.items()
                        if all(exp <= now for exp in leases.values())]:
            del self._leases[counter]
        day, month = day_of(now), month_of(now)
        for key in [k for k in self._spent
                    if k[2] != (day if k[1] == "budget_usd_daily" else month)]:
            del self._spent[key]

    async def admit(self, charges: Sequence[Charge], ask: Ask) -> Admission:
        now = ask.now
        if now - self._swept_at > WINDOW:
            self._sweep(now)
        requests: RateState | None = None
        tokens: RateState | None = None
        budget_left: int | None = None
        for c in charges:
            q = c.quota
            if q.rpm is not None:
                window = self._rpm.setdefault(c.counter, _Window())
                used = window.used(now)
                if used + 1 > q.rpm:
                    return _refused("rpm", c.counter, window.wait_for(now, used + 1 - q.rpm),
                                    RateState(q.rpm, max(0, q.rpm - used), window.reset(now)))
                if requests is None or q.rpm - used - 1 < requests.remaining:
                    requests = RateState(q.rpm, q.rpm - used - 1, window.reset(now))
            if q.tpm is not None:
                window = self._tpm.setdefault(c.counter, _Window())
                used = window.used(now)
                if used + ask.tokens > q.tpm:
                    wait = (window.wait_for(now, used + ask.tokens - q.tpm)
                            if ask.tokens <= q.tpm else float(WINDOW))
                    return _refused("tpm", c.counter, wait, None,
                                    RateState(q.tpm, max(0, q.tpm - used), window.reset(now)))
                if tokens is None or q.tpm - used - ask.tokens < tokens.remaining:
                    tokens = RateState(q.tpm, q.tpm - used - ask.tokens, window.reset(now))
            if q.concurrency is not None:
                leases = self._leases.setdefault(c.counter, {})
                for rid in [r for r, exp in leases.items() if exp <= now]:
                    del leases[rid]
                if len(leases) >= q.concurrency:
                    return _refused("concurrency", c.counter, 1.0)
            for key, cap in _budgets(c, now):
                spent = self._spent.get(key, 0)
                if spent >= cap or spent + ask.cost_micros > cap:
                    until = until_next_day if key[1] == "budget_usd_daily" else until_next_month
                    return _refused(key[1], c.counter, until(now))
                left = cap - spent - ask.cost_micros
                budget_left = left if budget_left is None else min(budget_left, left)
        for c in charges:
            q = c.quota
            if q.rpm is not None:
                self._rpm[c.counter].add(now, 1)
            if q.tpm is not None:
                self._tpm[c.counter].add(now, ask.tokens)
            if q.concurrency is not None:
                self._leases[c.counter][ask.lease_id] = now + ask.lease_ttl
            for key, _ in _budgets(c, now):
                self._spent[key] = self._spent.get(key, 0) + ask.cost_micros
        return Admission(True, requests=requests, tokens=tokens, budget_left_micros=budget_left)

    async def settle(self, charges: Sequence[Charge], lease_id: str, admitted_at: float,
                     token_delta: int, cost_delta_micros: int, now: float) -> None:
        for c in charges:
            q = c.quota
            if q.tpm is not None and token_delta and c.counter in self._tpm:
                self._tpm[c.counter].settle(admitted_at, now, token_delta)
            if q.concurrency is not None:
                self._leases.get(c.counter, {}).pop(lease_id, None)
            if cost_delta_micros:
                for key, _ in _budgets(c, admitted_at):
                    self._spent[key] = max(0, self._spent.get(key, 0) + cost_delta_micros)

    async def budget_left(self, charges: Sequence[Charge], now: float) -> int | None:
        left: int | None = None
        for c in charges:
            for key, cap in _budgets(c, now):
                here = cap - self._spent.get(key, 0)
                left = here if left is None else min(left, here)
        return left

    async def close(self) -> None:
        return None


def _budgets(charge: Charge, at: float) -> list[tuple[tuple[str, str, int], int]]:
    """A charge's budgets for the day and month of ``at``: ``((counter, kind, period), cap)``
    with the cap in micro-dollars."""
    q = charge.quota
    out = []
    if q.budget_usd_daily is not None:
        out.append(((charge.counter, "budget_usd_daily", day_of(at)), micros(q.budget_usd_daily)))
    if q.budget_usd_monthly is not None:
        out.append(((charge.counter, "budget_usd_monthly", month_of(at)),
                    micros(q.budget_usd_monthly)))
    return out


def _refused(kind: str, counter: str, retry_after: float, requests: RateState | None = None,
             tokens: RateState | None = None) -> Admission:
    return Admission(False, refused_by=kind, counter=counter, retry_after=retry_after,
                     requests=requests, tokens=tokens)
