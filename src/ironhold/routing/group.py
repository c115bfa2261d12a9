"""A ``ModelGroup``: deployments serving one model name, and the per-group resilience state
(balancer, outlier detector, retry and hedge budgets, bulkheads)."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ironhold.config.schema import FallbackOnConfig, RoutingConfig
from ironhold.core.errors import OverloadedError
from ironhold.routing.balancer import Balancer, PrefixAffinity, make_balancer
from ironhold.routing.budget import RetryBudget
from ironhold.routing.deployment import Deployment
from ironhold.routing.outlier import OutlierDetector
from ironhold.routing.rollout import Split
from ironhold.routing.stats import Clock, LatencyWindow
from ironhold.telemetry.metrics import Metrics
from ironhold.upstream.transport import Deadlines


@dataclass(eq=False)
class ModelGroup:
    name: str
    deployments: list[Deployment]
    policy: RoutingConfig
    metrics: Metrics
    fallbacks: list[str] = field(default_factory=list)
    fallback_on: FallbackOnConfig = field(default_factory=FallbackOnConfig)
    owned_by: str = "ironhold"
    created: int = field(default_factory=lambda: int(time.time()))
    balancer: Balancer | None = None
    #: Monotonic seconds; a test's virtual clock replaces it (``build_gateway(clock=...)``).
    clock: Clock = time.monotonic
    #: A rollout's split of the traffic between its candidate and the stable side.
    split: Split | None = None
    #: The shadow deployment's name: it takes only copies, never a client's request.
    shadow: str | None = None

    def __post_init__(self) -> None:
        policy = self.policy
        clock = self.clock
        #: The deployments that serve clients (all but the shadow).
        self.rotation = [d for d in self.deployments if d.name != self.shadow]
        if self.balancer is None:
            self.balancer = make_balancer(policy.balancer, clock)
        self.outlier = OutlierDetector(self.name, self.deployments, policy.outlier, self.metrics,
                                       clock)
        self.budget = RetryBudget(policy.retries.budget_percent, policy.retries.min_per_second,
                                  clock=clock)
        self.hedge_budget = RetryBudget(policy.hedging.max_extra_percent, 0.0, clock=clock)
        self.affinity = PrefixAffinity(policy.affinity.load_factor) \
            if policy.affinity.enabled else None
        for d in self.deployments:
            if d.recent.percentile != policy.hedging.percentile:
                d.recent = LatencyWindow(policy.hedging.percentile)
        t = policy.timeout
        #: The configured deadlines, shared so the transport's cached client timeout is reused.
        self.deadlines = Deadlines(connect=t.connect, first_token=t.first_token, total=t.total)
        self.per_key_cap = policy.bulkhead.max_concurrent_per_key
        self._capped = any(d.max_concurrent is not None for d in self.deployments)
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._per_key: dict[str, int] = {}
        self._key_waiters: dict[str, deque[asyncio.Future[None]]] = {}

    def attempted(self, d: Deployment, failed: bool, ttft: float | None) -> None:
        """An attempt's outcome, for a rollout's gates (the shadow's copies are neither
        side's)."""
        if self.split is not None and d.name != self.shadow:
            self.split.attempted(d, failed, ttft)

    def carry_from(self, old: ModelGroup) -> None:
        """A reload rebuilt this group: keep the old one's retry and hedge budgets and its
        balancer's statistics where their settings did not change."""
        before, now = old.policy, self.policy
        if before.retries == now.retries:
            self.budget = old.budget
        if before.hedging == now.hedging:
            self.hedge_budget = old.hedge_budget
        if before.balancer == now.balancer and old.balancer is not None:
            self.balancer = old.balancer

    # -- choosing a deployment ------------------------------------------------------------------

    def pick(self, tried: list[Deployment], busy: list[Deployment],
             body: dict[str, Any], side: str | None = None) -> Deployment | None:
        """A deployment for the next attempt, or None if none may take it now.

        Preferred: up, not ejected, passing health checks, not yet tried by this request.
        Throttled (429 Retry-After), full (bulkhead) and busy (this request's other attempt)
        deployments are never picked. If every deployment is ejected or down, they are tried
        anyway (panic routing) rather than failing requests that might succeed.
        """
        now = self.clock()
        outlier = self.outlier
        usable: list[Deployment] = []
        panic: list[Deployment] = []
        split = self.split
        for d in self.rotation:
            if d.throttled_until > now or d.full or d in busy:
                continue
            if split is not None and not split.allowed(d, side, tried):
                continue
            if d.available and not d.check_failed and outlier.admits(d, now):
                usable.append(d)
            elif not d.probing:
                panic.append(d)
        pool = [d for d in usable if d not in tried] or usable
        if not pool:
            pool = [d for d in panic if d not in tried] or panic
            if not pool:
                return None
        chosen = None
        if self.affinity is not None and len(pool) > 1:
            key = PrefixAffinity.key_of(body)
            if key is not None:
                chosen = self.affinity.pick(key, pool)
        if chosen is None:
            assert self.balancer is not None
            chosen = self.balancer.pick(pool)
        outlier.picked(chosen)
        return chosen

    def throttled_for(self) -> float | None:
        """If every deployment is throttled by a 429, how long until the first may be used."""
        now = self.clock()
        waits = [d.throttled_until - now for d in self.rotation]
        return min(waits) if all(w > 0 for w in waits) else None

    def any_full(self) -> bool:
        return self._capped and any(d.full for d in self.deployments)

    # -- bulkheads ------------------------------------------------------------------------------

    async def wait_for_capacity(self, within: float) -> None:
        """Every deployment is at its concurrency cap: wait (bounded) for one to free up."""
        await self._bounded_wait(self._waiters, within, "deployments_full",
                                 f"model group '{self.name}' is at capacity; retry shortly")

    async def _bounded_wait(self, waiters: deque[asyncio.Future[None]], within: float,
                            reason: str, refusal: str,
                            give_back: Callable[[], None] | None = None) -> None:
        """Wait at most ``bulkhead.max_wait`` (and ``within``) in a bounded queue for a slot to
        be handed over; otherwise shed with a fast 429. ``give_back`` returns a slot handed over
        just as the wait was cancelled."""
        bulkhead = self.policy.bulkhead
        if len(waiters) >= bulkhead.max_waiting or within <= 0:
            self.metrics.shed(self.name, reason)
            raise OverloadedError(refusal, retry_after=1.0)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter, min(within, bulkhead.max_wait))
        except TimeoutError:
            self.metrics.shed(self.name, reason)
            raise OverloadedError(refusal, retry_after=1.0) from None
        except BaseException:
            if give_back is not None and waiter.done() and not waiter.cancelled():
                give_back()
            raise
        finally:
            if waiter in waiters:
                waiters.remove(waiter)

    def released(self, d: Deployment) -> None:
        """An attempt on ``d`` ended: wake one request waiting for capacity."""
        d.outstanding -= 1
        if self._waiters and not d.full:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    async def admit_key(self, key_id: str, within: float) -> Callable[[], None]:
        """The per-key bulkhead. Returns the release function."""
        cap = self.per_key_cap
        if cap is None:
            return no_release
        if self._per_key.get(key_id, 0) < cap:
            self._per_key[key_id] = self._per_key.get(key_id, 0) + 1
        else:
            # A releasing request hands its slot over, so the count already includes ours.
            waiters = self._key_waiters.setdefault(key_id, deque())
            try:
                await self._bounded_wait(
                    waiters, within, "key_concurrency",
                    f"too many concurrent requests for this key on '{self.name}' (at most {cap})",
                    give_back=lambda: self._release_key(key_id))
            finally:
                if not waiters:
                    self._key_waiters.pop(key_id, None)
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._release_key(key_id)

        return release

    def _release_key(self, key_id: str) -> None:
        """A key's slot is free: hand it to a waiting request of that key, or uncount it."""
        waiting = self._key_waiters.get(key_id)
        while waiting:
            waiter = waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes on: the count stays
                return
        left = self._per_key[key_id] - 1
        if left:
            self._per_key[key_id] = left
        else:
            del self._per_key[key_id]


def no_release() -> None:
    """The release function of a bulkhead that admitted without counting."""
    return None
