"""One contract for every limit store: in-process and Redis. Time is passed in, so the
windows are tested on a controlled clock."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from ironhold.core.principal import Quota
from ironhold.limits.redis_store import RedisLimitStore
from ironhold.limits.store import Ask, Charge, LimitStore, MemoryLimitStore

REDIS = "redis://127.0.0.1:6379/15"
T0 = 1_795_000_000.0  # a fixed moment, mid-day UTC


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[LimitStore]:
    made: LimitStore = MemoryLimitStore() if request.param == "memory" else RedisLimitStore(REDIS)
    yield made
    await made.close()


def counter() -> str:
    return "test-" + uuid.uuid4().hex[:12]


def ask(now: float, tokens: int = 10, cost: int = 0, rid: str | None = None) -> Ask:
    return Ask(lease_id=rid or uuid.uuid4().hex, tokens=tokens, cost_micros=cost, now=now)


async def test_requests_per_minute_hold_over_a_sliding_window(store: LimitStore) -> None:
    c = [Charge(counter(), Quota(rpm=5))]
    for i in range(5):
        admitted = await store.admit(c, ask(T0 + i))
        assert admitted.allowed and admitted.requests is not None
        assert admitted.requests.remaining == 4 - i and admitted.requests.limit == 5
    refused = await store.admit(c, ask(T0 + 10))
    assert not refused.allowed and refused.refused_by == "rpm"
    # The first request (second T0) leaves the window once that second is 60 s old.
    assert refused.retry_after == pytest.approx(51, abs=0.01)
    assert not (await store.admit(c, ask(T0 + 60.5))).allowed
    assert (await store.admit(c, ask(T0 + 61))).allowed
    assert not (await store.admit(c, ask(T0 + 61.5))).allowed


async def test_tokens_are_reserved_then_settled(store: LimitStore) -> None:
    c = [Charge(counter(), Quota(tpm=1000))]
    first = ask(T0, tokens=600)
    assert (await store.admit(c, first)).allowed
    refused = await store.admit(c, ask(T0 + 1, tokens=500))
    assert not refused.allowed and refused.refused_by == "tpm"
    # The first request used 150 tokens, not 600: the difference comes back.
    await store.settle(c, first.lease_id, T0, token_delta=-450, cost_delta_micros=0,
                      now=T0 + 1)
    admitted = await store.admit(c, ask(T0 + 2, tokens=500))
    assert admitted.allowed and admitted.tokens is not None
    assert admitted.tokens.remaining == 1000 - 150 - 500
    too_big = await store.admit(c, ask(T0 + 3, tokens=5000))
    assert not too_big.allowed and too_big.retry_after == 60


async def test_concurrency_leases_are_released_or_lapse(store: LimitStore) -> None:
    c = [Charge(counter(), Quota(concurrency=2))]
    a, b = ask(T0), ask(T0)
    assert (await store.admit(c, a)).allowed and (await store.admit(c, b)).allowed
    refused = await store.admit(c, ask(T0))
    assert refused.refused_by == "concurrency" and refused.retry_after > 0
    await store.settle(c, a.lease_id, T0, 0, 0, now=T0 + 1)
    assert (await store.admit(c, ask(T0 + 1))).allowed
    # A lease never released (its replica died) lapses after lease_ttl.
    assert not (await store.admit(c, ask(T0 + 600))).allowed
    assert (await store.admit(c, ask(T0 + 700))).allowed


async def test_budgets_per_day_and_month(store: LimitStore) -> None:
    c = [Charge(counter(), Quota(budget_usd_daily=1.0, budget_usd_monthly=1.5))]
    first = ask(T0, cost=700_000)
    admitted = await store.admit(c, first)
    assert admitted.allowed and admitted.budget_left_micros == 300_000
    refused = await store.admit(c, ask(T0, cost=400_000))
    assert refused.refused_by == "budget_usd_daily"
    assert 0 < refused.retry_after <= 86400
    await store.settle(c, first.lease_id, T0, 0, cost_delta_micros=-500_000,
                      now=T0 + 1)  # cheaper than reserved
    assert await store.budget_left(c, T0) == 800_000
    assert (await store.admit(c, ask(T0, cost=400_000))).allowed
    # The next day has a fresh daily budget but the same month's.
    next_day = T0 + 86400
    monthly = await store.admit(c, ask(next_day, cost=1_000_000))
    if monthly.allowed:  # T0 + 1 day may fall in the next month: then the month is fresh too
        assert await store.budget_left(c, next_day) is not None
    else:
        assert monthly.refused_by == "budget_usd_monthly"


async def test_every_counter_must_have_room_and_none_is_charged_otherwise(
        store: LimitStore) -> None:
    key, tenant = counter(), counter()
    charges = [Charge(key, Quota(rpm=100)), Charge(tenant, Quota(rpm=2))]
    assert (await store.admit(charges, ask(T0))).allowed
    assert (await store.admit(charges, ask(T0))).allowed
    refused = await store.admit(charges, ask(T0))
    assert refused.refused_by == "rpm" and refused.counter == tenant
    # The refused request did not count against the key.
    alone = await store.admit([Charge(key, Quota(rpm=100))], ask(T0))
    assert alone.requests is not None and alone.requests.remaining == 100 - 3
    headers = await store.admit([Charge(counter(), Quota(rpm=10)), Charge(counter(),
                                 Quota(rpm=3))], ask(T0))
    assert headers.requests is not None and headers.requests.limit == 3  # the tightest


async def test_no_limits_no_state(store: LimitStore) -> None:
    admitted = await store.admit([Charge(counter(), Quota())], ask(T0))
    assert admitted.allowed and admitted.requests is None and admitted.tokens is None
    assert admitted.budget_left_micros is None
    assert await store.budget_left([Charge(counter(), Quota())], T0) is None
