"""Shadow traffic through a real gateway: copies go to the shadow deployment off the client's
path (never waited for, never failing the client, never charged), and are compared."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import openai

from ironhold.core.principal import Quota
from tests.helpers import CHAT, post, wait_until
from tests.servers import GatewayServer, SimulatorServer


def shadow_models(primary: SimulatorServer, shadow: SimulatorServer,
                  percent: float = 100) -> list[dict[str, Any]]:
    return [{"name": "chat", "deployments": [{"name": "live", "url": primary.url},
                                             {"name": "next", "url": shadow.url}],
             "shadow": {"deployment": "next", "percent": percent}}]


def summary(gw: GatewayServer) -> dict[str, Any]:
    admin = {"Authorization": f"Bearer {gw.create_key(admin=True)}"}
    shadows = httpx.get(gw.base_url + "/admin/shadow", headers=admin).json()["shadows"]
    assert len(shadows) == 1
    found: dict[str, Any] = shadows[0]
    return found


def test_copies_are_compared_and_never_waited_for(
        make_gateway: Callable[..., GatewayServer],
        make_simulator: Callable[..., SimulatorServer]) -> None:
    primary = make_simulator(seed=1)
    slow = make_simulator(seed=1, ttft={"ms": 1500})
    gw = make_gateway(shadow_models(primary, slow), audit={"enabled": True})
    key = gw.create_key()
    answer = post(gw, key, CHAT)
    assert answer.status_code == 200
    # The client has its answer while its copy is still waiting on the slow shadow.
    assert summary(gw)["in_flight"] == 1 and summary(gw)["pairs"] == 0
    assert primary.simulator.served == 1
    with openai.OpenAI(base_url=gw.v1, api_key=key, max_retries=0) as client:
        text = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
            model="chat", stream=True, messages=[{"role": "user", "content": "hi"}])
            if c.choices)
    assert text
    assert wait_until(lambda: summary(gw)["pairs"] == 2, 10)
    result = summary(gw)
    assert result["model"] == "chat" and result["deployment"] == "next"
    assert result["shadow"]["errors"] == 0 and result["primary"]["errors"] == 0
    assert result["shadow"]["latency_ms"]["p50"] >= 1500 > result["primary"]["latency_ms"]["p50"]
    assert result["shadow"]["ttft_ms"]["p50"] >= 1500  # the streamed pair's
    assert result["exact_agreement"] is not None
    assert slow.simulator.served == 2 and primary.simulator.served == 2
    audit = gw.gateway.audit
    assert audit is not None
    records = [json.loads(r.record) for r in audit.log.store.records()]
    assert wait_until(lambda: len([r for r in (json.loads(x.record) for x in
                                               audit.log.store.records())
                                   if r["kind"] == "shadow"]) == 2)
    requests = [r for r in records if r["kind"] == "request"]
    assert len(requests) == 2  # the copies are not requests of the client's


def test_a_failing_shadow_never_fails_the_client_nor_counts_against_its_limits(
        make_gateway: Callable[..., GatewayServer],
        make_simulator: Callable[..., SimulatorServer]) -> None:
    primary = make_simulator()
    broken = make_simulator(faults=[{"kind": "status", "status": 500, "rate": 1.0}])
    gw = make_gateway(shadow_models(primary, broken))
    key = gw.gateway.keys.create("two-a-minute", None, False, quota=Quota(rpm=2))[1]
    assert post(gw, key, CHAT).status_code == 200
    assert post(gw, key, CHAT).status_code == 200  # the copies took no part of the quota
    assert post(gw, key, CHAT).status_code == 429
    assert wait_until(lambda: summary(gw)["pairs"] == 2)
    result = summary(gw)
    assert result["shadow"]["errors"] == 2 and result["primary"]["errors"] == 0
    assert result["exact_agreement"] == 0


def test_the_shadow_takes_no_client_traffic_and_copies_only_a_share(
        make_gateway: Callable[..., GatewayServer],
        make_simulator: Callable[..., SimulatorServer]) -> None:
    primary, shadow = make_simulator(), make_simulator()
    gw = make_gateway(shadow_models(primary, shadow, percent=25))
    key = gw.create_key()
    for _ in range(200):
        assert post(gw, key, CHAT).status_code == 200
    assert primary.simulator.served == 200
    assert wait_until(lambda: summary(gw)["in_flight"] == 0)
    assert 25 <= shadow.simulator.served <= 80
