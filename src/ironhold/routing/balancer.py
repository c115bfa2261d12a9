"""Balancers: given the deployments that may take a request now, pick one.

- ``PeakEwmaP2C`` (default): power of two choices over peak-EWMA cost (latency x outstanding,
  per unit of weight). Two random candidates, the cheaper wins: O(1), no herding, and a slow
  deployment sheds load within a few requests (Finagle's and Linkerd's balancer).
- ``LeastOutstanding``: the fewest requests in flight per unit of weight (random tie-break).
- ``RoundRobin``: in turn, ignoring load and weight; kept for comparison.

``PrefixAffinity`` sits in front of any of them: requests that share a system prompt go to the
same deployment (rendezvous hashing, so the same on every replica) where the model server's KV
cache is warm, unless that deployment already holds more than ``load_factor`` x its fair share of
the group's outstanding requests (consistent hashing with bounded loads).
"""

from __future__ import annotations

import hashlib
import math
import random
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from ironhold.routing.deployment import Deployment
from ironhold.routing.stats import Clock


class Balancer(Protocol):
    def pick(self, candidates: Sequence[Deployment]) -> Deployment:
        """``candidates`` is never empty."""
        ...


class PeakEwmaP2C:
    def __init__(self, rng: random.Random | None = None, clock: Clock = time.monotonic):
        self._rng = rng or random.Random()
        self._clock = clock

    def pick(self, candidates: Sequence[Deployment]) -> Deployment:
        if len(candidates) == 1:
            return candidates[0]
        a, b = self._rng.sample(candidates, 2)
        now = self._clock()
        return a if a.cost(now) <= b.cost(now) else b


class LeastOutstanding:
    def __init__(self, rng: random.Random | None = None):
        self._rng = rng or random.Random()

    def pick(self, candidates: Sequence[Deployment]) -> Deployment:
        if len(candidates) == 1:
            return candidates[0]
        best = min(d.outstanding / d.weight for d in candidates)
        tied = [d for d in candidates if d.outstanding / d.weight == best]
        return tied[0] if len(tied) == 1 else self._rng.choice(tied)


class RoundRobin:
    def __init__(self) -> None:
        self._next = 0

    def pick(self, candidates: Sequence[Deployment]) -> Deployment:
        self._next += 1
        return candidates[self._next % len(candidates)]


#: The balancers by their config name, each made with the group's clock.
BALANCERS: dict[str, Callable[[Clock], Balancer]] = {
    "peak_ewma": lambda clock: PeakEwmaP2C(clock=clock),
    "least_outstanding": lambda clock: LeastOutstanding(),
    "round_robin": lambda clock: RoundRobin(),
}


def make_balancer(name: str, clock: Clock = time.monotonic) -> Balancer:
    return BALANCERS[name](clock)


class PrefixAffinity:
    def __init__(self, load_factor: float):
        self._load_factor = load_factor

    @staticmethod
    def key_of(body: dict[str, Any]) -> bytes | None:
        """The system (or developer) prompt, hashed; None when there is none."""
        messages = body.get("messages")
        if not isinstance(messages, list):
            return None
        for message in messages:
            if isinstance(message, dict) and message.get("role") in ("system", "developer"):
                content = message.get("content")
                text = content if isinstance(content, str) else repr(content)
                return hashlib.blake2b(text.encode("utf-8", "replace"), digest_size=16).digest()
        return None

    def pick(self, key: bytes, candidates: Sequence[Deployment]) -> Deployment | None:
        """The highest-ranked candidate under its load bound, or None if all are over it."""
        if len(candidates) == 1:
            return candidates[0]
        total_weight = sum(d.weight for d in candidates)
        in_flight = sum(d.outstanding for d in candidates) + 1
        ranked = sorted(candidates, key=lambda d: _rank(key, d.name), reverse=True)
        for d in ranked:
            bound = math.ceil(self._load_factor * in_flight * d.weight / total_weight)
            if d.outstanding + 1 <= bound:
                return d
        return None


def _rank(key: bytes, name: str) -> int:
    digest = hashlib.blake2b(key + name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")
