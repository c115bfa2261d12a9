"""Reloads: a new config built beside the running one and swapped in, with nothing dropped and
the state of what did not change carried over; an invalid one refused with the old one kept."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from ironhold.config import Config, parse_config
from ironhold.core.errors import ConfigError
from tests.helpers import CHAT, metric, post
from tests.servers import GatewayServer, SimulatorServer


def chat_group(*deployments: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": "chat", "deployments": list(deployments), **extra}


def edited(gateway: GatewayServer, tmp_path: Path, **sections: Any) -> Config:
    """The running config with ``sections`` replaced (as an operator's edit would)."""
    data = yaml.safe_load((tmp_path / "ironhold.yaml").read_text())
    data.update(sections)
    return parse_config(data, source="test.yaml", base_dir=tmp_path)


def test_a_reload_keeps_what_did_not_change_and_retires_the_rest(
        make_gateway: Callable[..., GatewayServer],
        make_simulator: Callable[..., SimulatorServer], tmp_path: Path) -> None:
    a, b, c = make_simulator(), make_simulator(), make_simulator()
    gw = make_gateway([chat_group({"name": "a", "url": a.url}, {"name": "b", "url": b.url})])
    key = gw.create_key()
    assert post(gw, key, CHAT).status_code == 200
    before = gw.gateway
    kept = before.router.groups["chat"].deployments[0]
    kept.ejections = 3  # what outlier detection learnt of it must survive
    done = gw.reload(edited(gw, tmp_path, models=[chat_group(
        {"name": "a", "url": a.url, "weight": 3}, {"name": "c", "url": c.url})]))
    after = gw.gateway
    assert after is not before and done.version == after.version != before.version
    assert [d.name for d in after.router.groups["chat"].deployments] == ["a", "c"]
    carried = after.router.groups["chat"].deployments[0]
    assert carried is kept and carried.ejections == 3 and carried.weight == 3
    # Shared, not rebuilt: the limit counters, the metrics, the state store.
    assert after.quotas.store is before.quotas.store
    assert after.metrics is before.metrics and after.store is before.store
    assert any("deployments[c]" in line for line in done.as_json()["changes"])
    gw.run(gw.serving.settled)
    retired = before.router.groups["chat"].deployments[1]
    assert retired.name == "b" and gw.run(lambda: _closed(retired))
    b_served = b.simulator.served
    for _ in range(6):
        assert post(gw, key, CHAT).status_code == 200
    # The removed deployment gets nothing more; the kept and the added one take it all.
    assert b.simulator.served == b_served
    assert a.simulator.served + b.simulator.served + c.simulator.served == 7


async def _closed(deployment: Any) -> bool:
    return bool(deployment.transport.inner.closed)


def test_a_stream_in_flight_finishes_on_the_config_it_started_with(
        make_gateway: Callable[..., GatewayServer],
        make_simulator: Callable[..., SimulatorServer], tmp_path: Path) -> None:
    slow = make_simulator(token_latency={"ms": 40}, completion_tokens=25)
    other = make_simulator()
    gw = make_gateway([chat_group({"name": "old", "url": slow.url})])
    key = gw.create_key()
    chunks: list[str] = []
    failure: list[BaseException] = []
    started = threading.Event()

    def stream() -> None:
        try:
            with openai.OpenAI(base_url=gw.v1, api_key=key, max_retries=0) as client:
                for chunk in client.chat.completions.create(
                        model="chat", stream=True,
                        messages=[{"role": "user", "content": "hi"}]):
                    started.set()
                    if chunk.choices and chunk.choices[0].delta.content:
                        chunks.append(chunk.choices[0].delta.content)
        except BaseException as exc:
            failure.append(exc)

    reader = threading.Thread(target=stream)
    reader.start()
    assert started.wait(10)
    old = gw.gateway
    gw.reload(edited(gw, tmp_path, models=[chat_group({"name": "new", "url": other.url})]))
    assert old.in_flight == 1  # the stream is still served by the old gateway
    reader.join(20)
    assert not failure and len(chunks) == 25
    gw.run(gw.serving.settled)
    assert old.in_flight == 0
    answer = post(gw, key, CHAT)
    assert answer.status_code == 200 and other.simulator.served == 1


def test_an_invalid_or_restart_only_config_is_refused_and_the_old_one_serves(
        gateway: GatewayServer, tmp_path: Path) -> None:
    before = gateway.gateway

    def reload(load: Callable[[], Config]) -> None:
        gateway.run(lambda: gateway.serving.reload(load, trigger="test"))

    def invalid() -> Config:
        return parse_config({"models": [{"name": "chat", "deployments": [{"url": "ftp://x"}]}]},
                            source="edited.yaml", base_dir=tmp_path)

    with pytest.raises(ConfigError) as refused:
        reload(invalid)
    assert refused.value.message == ("edited.yaml: models[0].deployments[0].url: must be an "
                                     "http:// or https:// URL")
    moved = edited(gateway, tmp_path, server={"port": 1})
    with pytest.raises(ConfigError) as restart:
        reload(lambda: moved)
    assert "server.port: cannot change while serving" in restart.value.message
    assert gateway.gateway is before
    assert post(gateway, gateway.create_key(), CHAT).status_code == 200
    assert metric(gateway, "ironhold_config_reloads_total", outcome="rejected") == 2


def test_limit_counters_survive_a_reload(gateway: GatewayServer, tmp_path: Path) -> None:
    key = gateway.gateway.keys.create("limited", None, False,
                                      quota=_quota(rpm=2))[1]
    assert post(gateway, key, CHAT).status_code == 200
    assert post(gateway, key, CHAT).status_code == 200
    gateway.reload(edited(gateway, tmp_path, guard={"enabled": False}))
    assert post(gateway, key, CHAT).status_code == 429


def _quota(**limits: Any) -> Any:
    from ironhold.core.principal import Quota

    return Quota(**limits)


def test_apply_through_the_admin_api(gateway: GatewayServer, simulator: SimulatorServer,
                                     tmp_path: Path) -> None:
    url = gateway.base_url + "/admin/config"
    admin = {"Authorization": f"Bearer {gateway.create_key(admin=True)}"}
    user = {"Authorization": f"Bearer {gateway.create_key()}"}
    text = (tmp_path / "ironhold.yaml").read_text()
    data = yaml.safe_load(text)
    data["models"].append({"name": "second", "deployments": [{"url": simulator.url}]})
    new = yaml.safe_dump(data)
    assert httpx.post(url, json={"config": new}, headers=user).status_code == 403
    dry = httpx.post(url, json={"config": new, "source": "git.yaml", "dry_run": True},
                     headers=admin).json()
    assert dry["applied"] is False and any("models[second]" in c for c in dry["changes"])
    assert "second" not in gateway.gateway.router.groups
    applied = httpx.post(url, json={"config": new, "source": "git.yaml"}, headers=admin)
    assert applied.status_code == 200, applied.text
    assert applied.json()["version"] == gateway.gateway.version
    running = httpx.get(url, headers=admin).json()
    assert running["source"] == "git.yaml" and running["version"] == applied.json()["version"]
    broken = httpx.post(url, json={"config": "models: [{name: x}]", "source": "git.yaml"},
                        headers=admin)
    assert broken.status_code == 400
    error = broken.json()["error"]
    assert error["code"] == "invalid_config"
    assert error["message"].startswith("git.yaml: models[0].deployments: ")
    assert httpx.get(url, headers=admin).json()["version"] == running["version"]


def test_reloads_are_audited(make_gateway: Callable[..., GatewayServer],
                             simulator: SimulatorServer, tmp_path: Path) -> None:
    gw = make_gateway([chat_group({"url": simulator.url})], audit={"enabled": True})
    before = gw.gateway.version
    done = gw.reload(edited(gw, tmp_path, guard={"enabled": False}))
    with pytest.raises(ConfigError):
        gw.reload(edited(gw, tmp_path, state={"url": "sqlite:///elsewhere.db"}))
    key = gw.create_key()
    assert post(gw, key, CHAT).status_code == 200
    records = gw.run(lambda: _records(gw))
    changes = [r for r in records if r["kind"] == "change"]
    assert [c["outcome"] for c in changes] == ["applied", "rejected"]
    assert changes[0]["detail"]["previous_version"] == before
    assert changes[0]["detail"]["version"] == done.version
    assert "state.url" in changes[1]["detail"]["error"]
    request = next(r for r in records if r["kind"] == "request")
    assert request["config_version"] == done.version


async def _records(gw: GatewayServer) -> list[dict[str, Any]]:
    audit = gw.gateway.audit
    assert audit is not None
    rows = await asyncio.to_thread(lambda: list(audit.log.store.records()))
    return [json.loads(row.record) for row in rows]


def test_a_config_that_fails_to_start_changes_nothing(
        make_gateway: Callable[..., GatewayServer],
        make_simulator: Callable[..., SimulatorServer], tmp_path: Path) -> None:
    """The new gateway is built and started before it is swapped in: if a new local model's
    file does not verify, the running one goes on exactly as it was (the weight edited in the
    same change included), and what the failed one had made is closed."""
    sim = make_simulator()
    gw = make_gateway([chat_group({"name": "a", "url": sim.url})])
    before = gw.gateway
    kept = before.router.groups["chat"].deployments[0]
    broken = edited(gw, tmp_path, models=[chat_group(
        {"name": "a", "url": sim.url, "weight": 5},
        {"name": "local", "local": {"gguf": "missing.gguf", "sha256": "0" * 64}})])
    with pytest.raises(ConfigError) as refused:
        gw.reload(broken)
    assert refused.value.message.startswith("test.yaml: cannot be served: model file ")
    assert "missing.gguf does not exist" in refused.value.message
    assert gw.gateway is before and kept.weight == 1.0
    assert post(gw, gw.create_key(), CHAT).status_code == 200


def test_a_config_bomb_is_refused_not_expanded(gateway: GatewayServer) -> None:
    """Aliases of aliases (a YAML "billion laughs") through the admin API: refused at once,
    the running config kept."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    admin = {"Authorization": f"Bearer {gateway.create_key(admin=True)}"}
    before = gateway.gateway.version
    answer = httpx.post(gateway.base_url + "/admin/config", headers=admin, timeout=10,
                        json={"config": "\n".join(lines), "source": "bomb.yaml"})
    assert answer.status_code == 400
    assert "more than 100,000 values" in answer.json()["error"]["message"]
    deep = httpx.post(gateway.base_url + "/admin/config", headers=admin, timeout=10,
                      json={"config": "[" * 5000 + "]" * 5000, "source": "deep.yaml"})
    assert deep.status_code == 400, deep.text
    assert gateway.gateway.version == before
