"""Balancing: power of two choices over outstanding requests, weighted.

Two distinct candidates are drawn at random and the one with the lower load (outstanding
requests divided by weight) wins; this avoids the herd behaviour of a global least-loaded pick
while staying O(1). Healthy deployments are preferred; if none is healthy, all are candidates,
so a group never refuses outright because of stale failure marks.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Sequence

from ironhold.routing.deployment import Deployment


class LeastOutstandingP2C:
    def __init__(self, rng: random.Random | None = None):
        self._rng = rng or random.Random()

    def pick(
        self, deployments: Sequence[Deployment], exclude: Collection[Deployment] = ()
    ) -> Deployment | None:
        candidates = [d for d in deployments if d not in exclude] if exclude else deployments
        if len(candidates) <= 1:  # the common single-deployment group: nothing to choose
            return candidates[0] if candidates else None
        healthy = [d for d in candidates if d.healthy]
        pool = healthy or [d for d in candidates if d.available] or candidates
        if len(pool) == 1:
            return pool[0]
        a, b = self._rng.sample(pool, 2)
        return a if a.outstanding / a.weight <= b.outstanding / b.weight else b
