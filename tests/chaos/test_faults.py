"""Fault injection at the upstream seam, through the real gateway in front of the simulator."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.helpers import CHAT, assert_openai_error, metric, post
from tests.servers import GatewayServer, SimulatorServer

STREAM = {**CHAT, "stream": True, "max_tokens": 4}


def fault(gw: GatewayServer, key: str, body: dict[str, Any], *faults: dict[str, Any],
          **headers: str) -> Any:
    value = json.dumps(list(faults) if len(faults) > 1 else faults[0])
    return post(gw, key, body, headers={"x-ironhold-fault": value, **headers})


@pytest.fixture
def pair(make_gateway: Callable[..., GatewayServer],
         make_simulator: Callable[..., SimulatorServer]) -> tuple[GatewayServer, str]:
    a, b = make_simulator(), make_simulator()
    gw = make_gateway([{"name": "chat", "routing": {"balancer": "round_robin",
                                                    "timeout": {"first_token": "300ms"}},
                        "deployments": [{"name": "a", "url": a.url},
                                        {"name": "b", "url": b.url}]}])
    return gw, gw.create_key("ops", admin=True)


def test_an_injected_abort_on_one_deployment_is_absorbed_by_a_retry(
        pair: tuple[GatewayServer, str]) -> None:
    gw, admin = pair
    for _ in range(4):
        response = fault(gw, admin, CHAT, {"kind": "abort", "status": 503, "deployment": "a"})
        assert response.status_code == 200 and response.headers["x-ironhold-deployment"] == "b"
    assert metric(gw, "ironhold_injected_faults_total", deployment="a", kind="abort") >= 2


def test_an_injected_429_answers_like_a_real_one_but_parks_nothing(
        pair: tuple[GatewayServer, str]) -> None:
    gw, admin = pair
    limited = fault(gw, admin, CHAT, {"kind": "abort", "status": 429, "retry_after": "9s"})
    assert_openai_error(limited, 429)
    assert limited.headers["retry-after"] in ("8", "9")
    # Both deployments said 429 to this request (it was retried on the second), but the faults
    # were its own: a request without them is served (a real 429 parks the deployment; see
    # tests/routing for that).
    assert post(gw, admin, CHAT).status_code == 200


def test_delay_slow_cut_malformed_reset_hang(
        make_gateway: Callable[..., GatewayServer],
        make_simulator: Callable[..., SimulatorServer]) -> None:
    sim = make_simulator()
    gw = make_gateway([{"name": "chat", "routing": {"retries": {"attempts": 1},
                                                    "timeout": {"first_token": "300ms",
                                                                "total": "2s"},
                                                    "outlier": {"enabled": False}},
                        "deployments": [{"url": sim.url}]}])
    admin = gw.create_key("ops", admin=True)

    started = time.monotonic()
    assert fault(gw, admin, CHAT, {"kind": "delay", "delay": "300ms"}).status_code == 200
    assert time.monotonic() - started >= 0.3

    started = time.monotonic()
    slow = fault(gw, admin, STREAM, {"kind": "slow", "delay": "100ms"})
    assert slow.status_code == 200 and "[DONE]" in slow.text
    assert time.monotonic() - started >= 0.4  # 4 tokens + the final chunks, 100 ms apart

    cut = fault(gw, admin, STREAM, {"kind": "cut", "after_chunks": 1})
    assert cut.status_code == 200 and '"error"' in cut.text and "[DONE]" not in cut.text
    error = assert_openai_error(fault(gw, admin, CHAT, {"kind": "cut"}), 502)
    assert "injected cut" in str(error["message"])

    garbled = fault(gw, admin, STREAM, {"kind": "malformed", "after_chunks": 1})
    assert garbled.status_code == 200 and 'data: {"id": "garbled' in garbled.text
    error = assert_openai_error(fault(gw, admin, CHAT, {"kind": "malformed"}), 502)
    assert "malformed body" in str(error["message"])

    error = assert_openai_error(fault(gw, admin, CHAT, {"kind": "reset"}), 503)
    assert "connection reset" in str(error["message"])

    started = time.monotonic()
    assert_openai_error(fault(gw, admin, STREAM, {"kind": "hang"}), 504)
    assert 0.25 < time.monotonic() - started < 1.5  # the first-token deadline, not forever

    percent = [fault(gw, admin, CHAT, {"kind": "abort", "status": 500, "percent": 50})
               .status_code for _ in range(60)]
    assert 10 < percent.count(502) < 50


def test_the_fault_header_is_for_admins_and_checked(
        make_gateway: Callable[..., GatewayServer], simulator: SimulatorServer) -> None:
    gw = make_gateway([{"name": "chat", "deployments": [{"url": simulator.url}]}])
    user, admin = gw.create_key("user"), gw.create_key("ops", admin=True)
    error = assert_openai_error(fault(gw, user, CHAT, {"kind": "reset"}), 403)
    assert "admin" in str(error["message"])
    bad_json = post(gw, admin, CHAT, headers={"x-ironhold-fault": "{kind: reset"})
    assert assert_openai_error(bad_json, 400)["param"] == "x-ironhold-fault"
    bad_kind = assert_openai_error(fault(gw, admin, CHAT, {"kind": "explode"}), 400)
    assert "kind" in str(bad_kind["message"])
    off = make_gateway([{"name": "chat", "deployments": [{"url": simulator.url}]}],
                       chaos={"header": False})
    admin_off = off.create_key("ops", admin=True)
    assert "turned off" in str(assert_openai_error(
        fault(off, admin_off, CHAT, {"kind": "reset"}), 403)["message"])


def test_faults_from_the_config_per_group_deployment_and_key(
        make_gateway: Callable[..., GatewayServer],
        make_simulator: Callable[..., SimulatorServer]) -> None:
    a, b = make_simulator(), make_simulator()
    gw = make_gateway(
        [{"name": "chat", "routing": {"retries": {"attempts": 1},
                                      "outlier": {"enabled": False}},
          "deployments": [{"name": "a", "url": a.url,
                           "faults": [{"kind": "abort", "status": 500}]}]},
         {"name": "other", "faults": [{"kind": "abort", "status": 503}],
          "routing": {"retries": {"attempts": 1}},
          "deployments": [{"name": "b", "url": b.url}]},
         {"name": "clean", "deployments": [{"name": "c", "url": b.url}]}],
        chaos={"keys": {"canary": [{"kind": "abort", "status": 502}]}})
    key, canary = gw.create_key("plain"), gw.create_key("canary")
    assert_openai_error(post(gw, key, CHAT), 502)  # the deployment's fault
    assert_openai_error(post(gw, key, {**CHAT, "model": "other"}), 502)  # the group's
    assert post(gw, key, {**CHAT, "model": "clean"}).status_code == 200
    assert_openai_error(post(gw, canary, {**CHAT, "model": "clean"}), 502)  # the key's
    assert a.simulator.served == 0 and b.simulator.served == 1  # aborts never reach upstream
