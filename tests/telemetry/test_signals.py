"""Signals end to end: a real gateway over three simulators, one of which slows down; the
signal shows at /admin/signals, as a metric, in the audit log and at a webhook."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import httpx
import orjson
import pytest
from aiohttp import web

from ironhold.simulator import SimulatorProfile
from tests.helpers import CHAT, assert_openai_error, metric, post, wait_until
from tests.servers import AppServer, GatewayServer, SimulatorServer

FAST = {"ttft": {"ms": 20}, "token_latency": {"ms": 0}, "completion_tokens": 3}


class Webhook(AppServer):
    """A receiver that keeps every JSON body POSTed to it."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        super().__init__(app)

    async def _hook(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.json())
        return web.Response(status=204)


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.close()


class Traffic:
    """Streams sent one after another from a thread until stopped."""

    def __init__(self, gw: GatewayServer, key: str, body: dict[str, Any]):
        self._stop = threading.Event()
        self.sent = 0
        self._thread = threading.Thread(target=self._run, args=(gw, key, body), daemon=True)
        self._thread.start()

    def _run(self, gw: GatewayServer, key: str, body: dict[str, Any]) -> None:
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set():
                with client.stream("POST", gw.v1 + "/chat/completions", json=body,
                                   headers={"Authorization": f"Bearer {key}"}) as response:
                    response.read()
                self.sent += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def signals(gw: GatewayServer, key: str) -> list[dict[str, Any]]:
    response = httpx.get(gw.base_url + "/admin/signals",
                         headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.text
    listed: list[dict[str, Any]] = response.json()["signals"]
    return listed


def test_a_ttft_spike_on_one_of_three_deployments_is_signalled_everywhere(
        webhook: Webhook, make_gateway: Callable[..., GatewayServer],
        make_simulator: Callable[..., SimulatorServer]) -> None:
    sims = [make_simulator(**FAST) for _ in range(3)]
    gw = make_gateway(
        [{"name": "chat", "routing": {"balancer": "round_robin"},
          "deployments": [{"name": f"d{i}", "url": s.url} for i, s in enumerate(sims)]}],
        telemetry={"signals": {"spike_window": "3s", "baseline": "60s", "min_samples": 10,
                               "webhook": {"url": f"http://127.0.0.1:{webhook.port}/hook"}}})
    admin = gw.create_key("ops", admin=True)
    user = gw.create_key("app")
    traffic = Traffic(gw, user, {**CHAT, "stream": True})
    try:
        assert wait_until(lambda: traffic.sent >= 150, 30)
        assert not [s for s in signals(gw, admin) if s["kind"] == "latency_spike"]
        sims[1].set_profile(SimulatorProfile.model_validate({**FAST, "ttft": {"ms": 100}}))
        slowed = time.monotonic()
        slowed_at = time.time()

        def spiking() -> list[dict[str, Any]]:
            return [s for s in signals(gw, admin) if s["kind"] == "latency_spike"
                    and s["detail"]["subject"] == "ttft" and s["active"]]

        assert wait_until(lambda: bool(spiking()), 30), signals(gw, admin)
        assert time.monotonic() - slowed < 30
    finally:
        traffic.stop()
    [spike] = spiking()
    assert spike["model"] == "chat" and spike["deployment"] == "d1"
    assert spike["detail"]["ratio"] >= 3
    assert spike["since"].endswith("Z")
    # "since" is when it began (the first 1-second slot in which it held), not when it was
    # noticed.
    began = datetime.fromisoformat(spike["since"].replace("Z", "+00:00")).timestamp()
    assert slowed_at - 1.5 <= began <= slowed_at + 3, (began, slowed_at)
    assert metric(gw, "ironhold_signal_active", kind="latency_spike", deployment="d1") == 1
    assert metric(gw, "ironhold_signal_active", kind="latency_spike", deployment="d0") == 0
    assert wait_until(lambda: any(b["signal"]["kind"] == "latency_spike"
                                  for b in webhook.bodies), 10)

    def audited() -> list[dict[str, Any]]:
        audit = gw.gateway.audit
        assert audit is not None
        rows = audit.log.store.records(0)
        return [orjson.loads(r.record) for r in rows if '"kind":"signal"' in r.record]

    assert wait_until(lambda: any(r["signal"]["kind"] == "latency_spike"
                                  for r in audited()), 10)


def test_signals_need_an_admin(gateway: GatewayServer) -> None:
    assert_openai_error(httpx.get(gateway.base_url + "/admin/signals"), 401)
    user = gateway.create_key()
    assert_openai_error(httpx.get(gateway.base_url + "/admin/signals",
                                  headers={"Authorization": f"Bearer {user}"}), 403)
    admin = gateway.create_key(admin=True)
    assert signals(gateway, admin) == []


def test_drift_reset_is_validated_and_audited(gateway: GatewayServer) -> None:
    admin = gateway.create_key(admin=True)
    headers = {"Authorization": f"Bearer {admin}"}
    url = gateway.base_url + "/admin/signals/drift/reset"
    assert_openai_error(httpx.post(url, json={"model": "nope"}, headers=headers), 404)
    assert_openai_error(httpx.post(url, json={"model": 5}, headers=headers), 400)
    assert_openai_error(httpx.post(url, json={"model": "chat", "x": 1}, headers=headers), 400)
    response = httpx.post(url, json={"model": "chat", "pin": "v2"}, headers=headers)
    assert response.status_code == 200
    assert response.json() == {"model": "chat", "reference": "pinned: v2"}
    assert post(gateway, gateway.create_key(), CHAT).status_code == 200
