"""Limits through the running gateway: 429s with Retry-After and x-ratelimit-* headers, tokens
settled with real usage, budgets priced by the table, concurrency, tenants and passports."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable

import httpx
import openai
import pytest

from tests.helpers import CHAT, assert_openai_error, post
from tests.servers import GatewayServer, SimulatorServer


@pytest.fixture
def limited(make_gateway: Callable[..., GatewayServer],
            simulator: SimulatorServer) -> GatewayServer:
    return make_gateway(
        [{"name": "chat", "deployments": [{"url": simulator.url}]}],
        limits={"tenants": {"acme": {"rpm": 4}},
                "prices": {"chat": {"input_per_million": 1000, "output_per_million": 2000}}},
    )


def test_requests_per_minute_answer_429_with_headers(limited: GatewayServer) -> None:
    from ironhold.core.principal import Quota

    _, key = limited.gateway.keys.create("k", quota=Quota(rpm=3))
    remaining = []
    for _ in range(3):
        ok = post(limited, key, CHAT)
        assert ok.status_code == 200
        assert ok.headers["x-ratelimit-limit-requests"] == "3"
        remaining.append(ok.headers["x-ratelimit-remaining-requests"])
    assert remaining == ["2", "1", "0"]
    refused = post(limited, key, CHAT)
    error = assert_openai_error(refused, 429)
    assert error["code"] == "rate_limit_exceeded" and "requests per minute" in str(error["message"])
    assert 1 <= int(refused.headers["Retry-After"]) <= 61
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    with (openai.OpenAI(base_url=limited.v1, api_key=key, max_retries=0) as client,
          pytest.raises(openai.RateLimitError)):
        client.chat.completions.create(**CHAT)  # type: ignore[call-overload]


def test_tokens_are_settled_with_the_real_usage(limited: GatewayServer) -> None:
    from ironhold.core.principal import Quota

    _, key = limited.gateway.keys.create("t", quota=Quota(tpm=1000))
    body = {**CHAT, "max_tokens": 600}
    first = post(limited, key, body)
    # Reserved 600 + the prompt estimate; the simulator used 8 completion tokens.
    assert first.status_code == 200
    assert int(first.headers["x-ratelimit-remaining-tokens"]) < 400
    second = post(limited, key, body)
    assert second.status_code == 200, "the first reservation was settled down to real usage"
    assert int(second.headers["x-ratelimit-remaining-tokens"]) > 300
    huge = assert_openai_error(post(limited, key, {**CHAT, "max_tokens": 5000}), 429)
    assert "more than the limit" in str(huge["message"])


def test_spend_budgets_follow_the_price_table(limited: GatewayServer) -> None:
    from ironhold.core.principal import Quota

    # $1000 per million input tokens: each small request costs about a cent.
    _, key = limited.gateway.keys.create("b", quota=Quota(budget_usd_daily=0.05))
    statuses = [post(limited, key, {**CHAT, "max_tokens": 8}).status_code for _ in range(12)]
    assert 200 in statuses and statuses[-1] == 429
    error = assert_openai_error(post(limited, key, CHAT), 429)
    assert error["code"] == "budget_exceeded" and "$0.05" in str(error["message"])


def test_concurrency_cap(make_gateway: Callable[..., GatewayServer],
                         make_simulator: Callable[..., SimulatorServer]) -> None:
    from ironhold.core.principal import Quota

    slow = make_simulator(ttft={"ms": 400})
    gw = make_gateway([{"name": "chat", "deployments": [{"url": slow.url}]}])
    _, key = gw.gateway.keys.create("c", quota=Quota(concurrency=2))
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        statuses = sorted(r.status_code for r in pool.map(lambda _: post(gw, key, CHAT),
                                                           range(4)))
    assert statuses == [200, 200, 429, 429]
    assert post(gw, key, CHAT).status_code == 200  # slots were released


def test_tenant_limits_cover_all_its_keys(limited: GatewayServer) -> None:
    a = limited.gateway.keys.create("a", tenant="acme")[1]
    b = limited.gateway.keys.create("b", tenant="acme")[1]
    other = limited.gateway.keys.create("c", tenant="globex")[1]
    statuses = [post(limited, key, CHAT).status_code for key in (a, b, a, b, a, b)]
    assert statuses == [200, 200, 200, 200, 429, 429]
    error = assert_openai_error(post(limited, a, CHAT), 429)
    assert "your tenant" in str(error["message"])
    assert post(limited, other, CHAT).status_code == 200


def test_passport_caps_are_shared_down_the_chain(limited: GatewayServer) -> None:
    from ironhold.core.principal import Quota

    _, key = limited.gateway.keys.create("svc", quota=Quota(rpm=100))
    form = {"grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "actor_token_type": "urn:ironhold:params:oauth:token-type:agent"}
    parent = httpx.post(limited.base_url + "/oauth/token", data={
        **form, "subject_token": key, "actor_token": "planner", "rpm": "5"}).json()
    children = [httpx.post(limited.base_url + "/oauth/token", data={
        **form, "subject_token": parent["access_token"], "actor_token": f"worker-{i}"}).json()
        for i in range(2)]
    # Two children each inherit rpm 5; minting them and their calls count against the parent's 5.
    statuses = [post(limited, c["access_token"], CHAT).status_code
                for c in (*children, *children)]
    assert statuses == [200, 200, 200, 429]
    assert post(limited, parent["access_token"], CHAT).status_code == 429
    assert post(limited, key, CHAT).status_code == 200  # the key itself has room


def test_an_unreachable_redis_fails_open_or_closed_as_configured(
        make_gateway: Callable[..., GatewayServer], simulator: SimulatorServer) -> None:
    """Redis down: the policy's budget lookup and the admission both take the configured
    path (admit and log, or 503), never a 500."""
    from pathlib import Path

    from ironhold.core.principal import Quota

    policies = Path(__file__).resolve().parents[2] / "examples" / "policies"
    for mode, status in (("open", 200), ("closed", 503)):
        gw = make_gateway([{"name": "chat", "deployments": [{"url": simulator.url}]}],
                          state={"url": f"sqlite:///state-{mode}.db",
                                 "redis": "redis://127.0.0.1:1/0"},
                          policy={"files": [str(policies)]},
                          limits={"on_store_error": mode})
        _, key = gw.gateway.keys.create(f"k-{mode}", tenant="acme",
                                        quota=Quota(budget_usd_daily=1.0))
        response = post(gw, key, CHAT)
        assert response.status_code == status, response.text
        if status != 200:
            assert_openai_error(response, status)
