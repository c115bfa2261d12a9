"""Rollouts through a real gateway on real simulators: a healthy candidate stepped up to 100%,
a failing one rolled back with its errors retried on the stable side, the state kept across a
restart, and an operator's commands."""

from __future__ import annotations

import json
from collections.abc import Callable
from itertools import count
from typing import Any

import httpx

from ironhold.config import parse_config
from tests.helpers import post, wait_until
from tests.servers import GatewayServer, SimulatorServer

_users = count()


def rollout_models(stable: SimulatorServer, candidate: SimulatorServer,
                   **rollout: Any) -> list[dict[str, Any]]:
    return [{"name": "chat",
             "deployments": [{"name": "stable", "url": stable.url, "version": "v1"},
                             {"name": "candidate", "url": candidate.url, "version": "v2"}],
             "routing": {"retries": {"attempts": 3, "backoff_base": 0.001,
                                     "min_per_second": 100}},
             "rollout": {"candidate": "candidate", "steps": [30, 100], "hold": "1s",
                         # Two simulators on one loaded machine differ in their first tokens
                         # by noise: the TTFT gate has its own tests (test_rollout.py).
                         "gates": {"min_samples": 10, "ttft_floor": "1s"}, **rollout}}]


def drive(gw: GatewayServer, key: str, until: Callable[[], bool], seconds: float = 30,
          ) -> list[int]:
    """Requests from ever new sessions until ``until``; their statuses."""
    statuses: list[int] = []

    def step() -> bool:
        for _ in range(5):
            body = {"model": "chat", "user": f"s{next(_users)}",
                    "messages": [{"role": "user", "content": "hi"}]}
            statuses.append(post(gw, key, body).status_code)
        return until()

    assert wait_until(step, seconds), (statuses[-5:], rollouts(gw)[0]["reason"])
    return statuses


def rollouts(gw: GatewayServer) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = gw.gateway.rollouts.listing()  # type: ignore[union-attr]
    return listed


def state(gw: GatewayServer) -> str:
    return str(rollouts(gw)[0]["state"])


def changes(gw: GatewayServer) -> list[dict[str, Any]]:
    audit = gw.gateway.audit
    assert audit is not None
    records = [json.loads(r.record) for r in audit.log.store.records()]
    return [r for r in records if r["kind"] == "change" and r["action"] == "rollout"]


def test_a_healthy_candidate_is_stepped_up_and_promoted(
        make_gateway: Callable[..., GatewayServer],
        make_simulator: Callable[..., SimulatorServer]) -> None:
    stable, candidate = make_simulator(), make_simulator()
    gw = make_gateway(rollout_models(stable, candidate), audit={"enabled": True})
    key = gw.create_key()
    assert wait_until(lambda: rollouts(gw)[0]["percent"] == 30)  # its state is loaded
    assert state(gw) == "progressing"
    statuses = drive(gw, key, lambda: state(gw) == "promoted")
    assert set(statuses) == {200}
    assert candidate.simulator.served > 0 and stable.simulator.served > 0
    served = candidate.simulator.served
    for _ in range(5):
        assert post(gw, key, {"model": "chat", "user": f"s{next(_users)}",
                              "messages": [{"role": "user", "content": "hi"}]}).status_code == 200
    assert candidate.simulator.served == served + 5  # 100%: every request
    assert [c["outcome"] for c in changes(gw)] == ["started", "step", "promoted"]
    assert changes(gw)[-1]["detail"]["percent"] == 100


def test_a_failing_candidate_is_rolled_back_and_its_errors_retried(
        make_gateway: Callable[..., GatewayServer],
        make_simulator: Callable[..., SimulatorServer], tmp_path: Any) -> None:
    stable = make_simulator()
    candidate = make_simulator(faults=[{"kind": "status", "status": 500, "rate": 0.3}])
    gw = make_gateway(rollout_models(stable, candidate, hold="30s"), audit={"enabled": True})
    key = gw.create_key()
    statuses = drive(gw, key, lambda: state(gw) == "rolled_back")
    assert set(statuses) == {200}  # every failure on the candidate was retried on stable
    listed = rollouts(gw)[0]
    assert listed["percent"] == 0 and "error rate" in listed["reason"]
    signals = gw.gateway.signals
    assert signals is not None
    active = [s.as_json() for s in signals.listing() if s.ended is None]
    assert any(s["kind"] == "rollout" and s["deployment"] == "candidate" for s in active)
    served = candidate.simulator.served
    for _ in range(10):
        assert post(gw, key, {"model": "chat", "user": f"s{next(_users)}",
                              "messages": [{"role": "user", "content": "hi"}]}).status_code == 200
    assert candidate.simulator.served == served  # rolled back: no traffic
    assert changes(gw)[-1]["outcome"] == "rolled_back"
    # A restart goes on where it was: still rolled back, not started again.
    config = parse_config(gw.config.model_dump(mode="python", exclude={"base_dir", "source"}),
                          source="again.yaml", base_dir=gw.config.base_dir)
    gw.close()
    again = GatewayServer(config)
    try:
        assert wait_until(lambda: state(again) == "rolled_back")
        assert rollouts(again)[0]["percent"] == 0
    finally:
        again.close()


def test_operators_pause_promote_abort_and_start(
        make_gateway: Callable[..., GatewayServer],
        make_simulator: Callable[..., SimulatorServer]) -> None:
    stable, candidate = make_simulator(), make_simulator()
    gw = make_gateway(rollout_models(stable, candidate, hold="1h"))
    admin = {"Authorization": f"Bearer {gw.create_key(admin=True)}"}
    user = {"Authorization": f"Bearer {gw.create_key()}"}
    url = gw.base_url + "/admin/rollouts"
    assert wait_until(lambda: rollouts(gw)[0]["percent"] == 30)
    assert httpx.post(url + "/chat/pause", headers=user).status_code == 403

    def act(action: str, model: str = "chat") -> httpx.Response:
        return httpx.post(f"{url}/{model}/{action}", headers=admin)

    assert act("pause").json()["state"] == "paused"
    refused = act("pause")
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_state"
    assert act("start").json()["state"] == "progressing"
    promoted = act("promote").json()
    assert promoted["state"] == "promoted" and promoted["percent"] == 100
    assert act("abort").json()["percent"] == 0
    restarted = act("start").json()
    assert restarted["state"] == "progressing" and restarted["percent"] == 30
    assert act("explode").status_code == 400
    assert act("pause", model="nope").status_code == 404
    listed = httpx.get(url, headers=admin).json()["rollouts"]
    assert [(r["model"], r["candidate"], r["state"], r["percent"]) for r in listed] == [
        ("chat", "candidate", "progressing", 30)]
    assert listed[0]["reason"].startswith("start by ")


def test_a_rollout_taken_out_and_put_back_starts_afresh(
        make_gateway: Callable[..., GatewayServer],
        make_simulator: Callable[..., SimulatorServer], tmp_path: Any) -> None:
    stable, candidate = make_simulator(), make_simulator()
    models = rollout_models(stable, candidate, hold="1h")
    gw = make_gateway(models)
    admin = {"Authorization": f"Bearer {gw.create_key(admin=True)}"}
    assert wait_until(lambda: rollouts(gw)[0]["percent"] == 30)
    httpx.post(gw.base_url + "/admin/rollouts/chat/promote", headers=admin).raise_for_status()
    assert state(gw) == "promoted"
    data = gw.config.model_dump(mode="python", exclude={"base_dir", "source"})
    without = json.loads(json.dumps({**data, "models": [
        {**models[0], "rollout": None}]}, default=str))
    gw.reload(parse_config(without, source="test.yaml", base_dir=tmp_path))
    assert gw.gateway.rollouts is not None and rollouts(gw) == []
    gw.reload(parse_config({**without, "models": models}, source="test.yaml",
                           base_dir=tmp_path))
    assert wait_until(lambda: rollouts(gw)[0]["percent"] == 30)
    assert state(gw) == "progressing"  # not promoted: a new rollout
