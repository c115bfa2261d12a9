"""Findings 5, 6, 13 and 14: no way around a limit. Streams are charged what they deliver,
concurrency leases are the server's, minting passports counts, and a burst is not an outage."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from tests.helpers import CHAT, assert_openai_error, post
from tests.security.conftest import limited_key
from tests.servers import GatewayServer

EXCHANGE = {"grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "actor_token_type": "urn:ironhold:params:oauth:token-type:agent"}


def _stream_tokens(gw: GatewayServer, key: str, include_usage: bool | None) -> tuple[int, bool]:
    """One streamed chat; returns (words received, whether a usage chunk came)."""
    # No max_tokens: the reservation is limits.default_completion_tokens, far below what the
    # simulator streams (its completion_tokens), as with a client that sets no cap.
    body: dict[str, Any] = dict(CHAT)
    if include_usage is not None:
        body["stream_options"] = {"include_usage": include_usage}
    words, usage = 0, False
    with openai.OpenAI(base_url=gw.v1, api_key=key, max_retries=0) as client:
        for chunk in client.chat.completions.create(stream=True, **body):
            usage = usage or chunk.usage is not None
            for choice in chunk.choices:
                words += len((choice.delta.content or "").split())
    return words, usage


@pytest.mark.parametrize("upstream_usage", ["when_asked", "never"])
def test_streams_are_charged_what_they_deliver(
        make_gateway: Callable[..., GatewayServer], make_simulator: Callable[..., Any],
        upstream_usage: str) -> None:
    """Was: a stream without include_usage was charged its reservation only: a key capped at
    2,000 tokens a minute received 18,006 streamed tokens. Also with a model server that never
    reports usage in streams (llama-cpp-python's), counted from the events."""
    sim = make_simulator(completion_tokens=200,
                         **({"stream_usage": "never"} if upstream_usage == "never" else {}))
    gw = make_gateway([{"name": "chat", "deployments": [{"url": sim.url}]}],
                      limits={"default_completion_tokens": 16})
    # Each stream reserves ~20 tokens and delivers 200.
    key = limited_key(gw, tpm=2000)
    delivered = 0
    for _ in range(30):
        try:
            words, usage = _stream_tokens(gw, key, include_usage=None)
        except openai.RateLimitError:
            break
        assert not usage, "the client did not ask for usage and must not get it"
        delivered += words
    assert 0 < delivered <= 2000 + 200, delivered
    # A client that asks for usage still gets its usage chunk.
    fresh = limited_key(gw, "fresh", tpm=100_000)
    words, usage = _stream_tokens(gw, fresh, include_usage=True)
    assert words == 200 and usage is (upstream_usage == "when_asked")


def test_budgets_count_streams_too(make_gateway: Callable[..., GatewayServer],
                                   make_simulator: Callable[..., Any]) -> None:
    """Was: a budget key streamed nine times its budget."""
    sim = make_simulator(completion_tokens=200)
    gw = make_gateway([{"name": "chat", "deployments": [{"url": sim.url}]}],
                      limits={"default_completion_tokens": 1,
                              "prices": {"chat": {"input_per_million": 0,
                                                  "output_per_million": 50}}})
    key = limited_key(gw, budget_usd_daily=0.05)  # 1,000 output tokens at $50 per million
    delivered = 0
    for _ in range(20):
        try:
            delivered += _stream_tokens(gw, key, include_usage=None)[0]
        except openai.RateLimitError as exc:
            assert exc.code == "budget_exceeded"
            break
    assert 0 < delivered <= 1000 + 200, delivered


@pytest.mark.parametrize("store", ["memory", "redis"])
def test_concurrency_leases_are_the_servers_not_the_clients(
        make_gateway: Callable[..., GatewayServer], make_simulator: Callable[..., Any],
        store: str, request: pytest.FixtureRequest) -> None:
    """Was: eight concurrent requests sharing one x-request-id counted as one lease."""
    # Slow enough that all eight overlap even on a loaded machine.
    sim = make_simulator(ttft={"distribution": "fixed", "ms": 2000})
    state: dict[str, Any] = {}
    if store == "redis":
        state = {"state": {"url": "sqlite:///state.db",
                           "redis": request.getfixturevalue("redis_url")}}
    gw = make_gateway([{"name": "chat", "deployments": [{"url": sim.url}]}], **state)
    key = limited_key(gw, concurrency=2)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(
            lambda _: post(gw, key, CHAT, headers={"x-request-id": "same-id"}).status_code,
            range(8)))
    assert statuses.count(200) == 2 and statuses.count(429) == 6, statuses


def test_minting_passports_counts_against_the_subjects_limits(
        chat_gateway: Callable[..., GatewayServer]) -> None:
    """Was: a key limited to 2 requests a minute minted 40 passports in a burst."""
    gw = chat_gateway()
    key = limited_key(gw, rpm=2)
    statuses = [httpx.post(gw.base_url + "/oauth/token",
                           data={**EXCHANGE, "subject_token": key, "actor_token": f"a{i}"}
                           ).status_code for i in range(10)]
    assert statuses == [200, 200] + [429] * 8
    assert gw.gateway.authenticator.passports is not None
    assert len(gw.gateway.authenticator.passports.list_passports()) == 2


def test_minting_passports_needs_a_policy_permit(
        chat_gateway: Callable[..., GatewayServer], tmp_path: Any) -> None:
    (tmp_path / "only-chat.cedar").write_text(
        'permit(principal, action == Ironhold::Action::"chat", resource);\n')
    gw = chat_gateway(policy={"files": [str(tmp_path / "only-chat.cedar")]})
    key = gw.create_key()
    denied = httpx.post(gw.base_url + "/oauth/token",
                        data={**EXCHANGE, "subject_token": key, "actor_token": "bot"})
    assert assert_openai_error(denied, 403)["code"] == "policy_denied"
    assert post(gw, key, CHAT).status_code == 200


def test_a_burst_larger_than_the_redis_pool_keeps_the_limit(
        chat_gateway: Callable[..., GatewayServer], redis_url: str) -> None:
    """Was: 300 concurrent requests on a key limited to 100 a minute emptied the Redis pool
    (MaxConnectionsError), the stage read it as 'store unavailable' and admitted all 300."""
    gw = chat_gateway(state={"url": "sqlite:///state.db", "redis": redis_url},
                      limits={"on_store_error": "open"})
    key = limited_key(gw, rpm=100)

    async def burst() -> list[int]:
        limits = httpx.Limits(max_connections=300)
        async with httpx.AsyncClient(limits=limits, timeout=60) as client:
            answers = await asyncio.gather(*(
                client.post(gw.v1 + "/chat/completions", json=CHAT,
                            headers={"Authorization": f"Bearer {key}"}) for _ in range(300)))
        return [a.status_code for a in answers]

    statuses = asyncio.run(burst())
    assert statuses.count(200) == 100 and statuses.count(429) == 200, \
        {s: statuses.count(s) for s in set(statuses)}


def test_an_unreachable_store_refuses_by_default(
        chat_gateway: Callable[..., GatewayServer]) -> None:
    """Limits that promise to be exact fail closed unless the operator chooses open."""
    gw = chat_gateway(state={"url": "sqlite:///state.db", "redis": "redis://127.0.0.1:1/0"})
    key = limited_key(gw, rpm=5)
    assert_openai_error(post(gw, key, CHAT), 503)


def test_the_in_process_store_forgets_counters_no_longer_in_use() -> None:
    """Was (from reading): in-process counters were never forgotten, so every passport ever
    minted kept its windows in memory."""
    from ironhold.core.principal import Quota
    from ironhold.limits.store import Ask, Charge, LeaseIds, MemoryLimitStore

    store = MemoryLimitStore()
    leases = LeaseIds()
    quota = Quota(rpm=10, tpm=1000, concurrency=2, budget_usd_daily=1.0)
    t0 = 1_795_000_000.0

    async def run() -> tuple[int, int]:
        for i in range(1000):
            charges = [Charge(f"pp_{i}", quota)]
            lease = leases.next()
            await store.admit(charges, Ask(lease, 10, 5, t0))
            await store.settle(charges, lease, t0, 0, 0, t0 + 1)
        busy = store.counters()
        await store.admit([Charge("pp_now", quota)], Ask(leases.next(), 10, 5, t0 + 2 * 86400))
        return busy, store.counters()

    busy, later = asyncio.run(run())
    assert busy >= 3000 and later <= 4
