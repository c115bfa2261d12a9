"""The console in real headless Chromium (Debian's, driven by Playwright): it loads without
errors, an admin signs in, its numbers move under load, a killed deployment shows as ejected,
and an audit record verifies in the browser. With ``IRONHOLD_SCREENSHOTS=DIR`` set, the
screenshots for docs/observability.md are written there."""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from ironhold.simulator import SimulatorProfile
from tests.helpers import CHAT, wait_until
from tests.servers import GatewayServer, SimulatorServer

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FAST = {"ttft": {"distribution": "lognormal", "median_ms": 15}, "token_latency": {"ms": 1},
        "completion_tokens": 4}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox"])
        yield launched
        launched.close()


class Load:
    """Requests from four threads (two of streams, two of whole answers) until stopped."""

    def __init__(self, gw: GatewayServer, key: str):
        self._stop = threading.Event()
        self.sent = 0
        self._threads = [threading.Thread(target=self._run, args=(gw, key, stream), daemon=True)
                         for stream in (True, False, True, False)]
        for thread in self._threads:
            thread.start()

    def _run(self, gw: GatewayServer, key: str, stream: bool) -> None:
        with httpx.Client(timeout=10, headers={"Authorization": f"Bearer {key}"}) as client:
            while not self._stop.is_set():
                with contextlib.suppress(httpx.HTTPError):
                    client.post(gw.v1 + "/chat/completions", json={**CHAT, "stream": stream})
                self.sent += 1

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)


def shoot(page: Page, name: str) -> None:
    folder = os.environ.get("IRONHOLD_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / name), full_page=True)


def stat(page: Page, model: str, label: str) -> str:
    box = page.locator(f'.model[data-model="{model}"] .stat', has_text=label).first
    return str(box.locator("b").inner_text())


def test_the_console_shows_the_gateway_live(
        browser: Browser, make_gateway: Callable[..., GatewayServer],
        make_simulator: Callable[..., SimulatorServer]) -> None:
    sims = [make_simulator(**FAST, seed=i) for i in range(3)]
    gw = make_gateway(
        [{"name": "chat", "slo": {"availability": 99.5, "ttft_p95": "250ms",
                                  "latency_p99": "2s"},
          "routing": {"balancer": "round_robin",
                      "outlier": {"consecutive_failures": 3, "base_ejection": "60s"}},
          "deployments": [{"name": f"gpu-{i}", "url": s.url} for i, s in enumerate(sims)]}],
        guard={"enabled": True},
        telemetry={"signals": {"spike_window": "4s", "baseline": "60s", "min_samples": 5}})
    admin = gw.create_key("ops", admin=True)
    user = gw.create_key("app")
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    problems: list[str] = []
    urls: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("request", lambda r: urls.append(r.url))

    page.goto(gw.base_url + "/console")
    assert page.title() == "Ironhold console"
    page.fill("#key", "ih-not-a-key")
    page.click("button[type=submit]")
    page.wait_for_selector("#signin-error:has-text('Sign-in failed')")
    problems.clear()  # the refused sign-in logs its 401 in the console: expected
    shoot(page, "console-signin.png")

    load = Load(gw, user)
    try:
        page.fill("#key", admin)
        page.click("button[type=submit]")
        page.wait_for_selector('.model[data-model="chat"]')
        # Numbers move: requests/s rises from nothing, and the recent list fills.
        assert wait_until(lambda: float(stat(page, "chat", "requests/s")) > 1, 20)
        first = page.locator("#recent tbody tr").first.inner_text()
        assert wait_until(lambda: page.locator("#recent tbody tr").first.inner_text() != first,
                          10)
        assert stat(page, "chat", "TTFT p50").endswith("ms")
        page.wait_for_selector('tr[data-deployment="gpu-0"][data-state="healthy"]')
        shoot(page, "console-live.png")

        # One deployment's first tokens slow down six times: the signal shows on the page.
        sims[1].set_profile(SimulatorProfile.model_validate(
            {**FAST, "ttft": {"distribution": "lognormal", "median_ms": 90}}))
        page.wait_for_selector('#signals tr[data-kind="latency_spike"]', timeout=30_000)
        assert "gpu-1" in page.locator('#signals tr[data-kind="latency_spike"]').first.inner_text()
        shoot(page, "console-signal.png")

        sims[2].close()  # a deployment dies
        page.wait_for_selector('tr[data-deployment="gpu-2"][data-state="ejected"]',
                               timeout=20_000)
        why = page.locator('tr[data-deployment="gpu-2"]').inner_text()
        assert "consecutive_failures" in why
        shoot(page, "console-ejected.png")
    finally:
        load.stop()

    # An audit record verifies in the browser: leaf hash, inclusion proof, signed checkpoint.
    page.locator("#recent tbody tr button", has_text="verify").first.click()
    page.wait_for_selector("#proof.verified", timeout=10_000)
    assert "verified" in page.locator("#proof").inner_text()

    assert problems == [], problems
    assert not [u for u in urls if admin in u]  # the key never went into a URL
    page.click("#signout")
    assert page.locator("#signin").is_visible()
    page.close()


def test_the_console_state_needs_an_admin(gateway: GatewayServer) -> None:
    url = gateway.base_url + "/admin/console/state"
    assert httpx.get(url).status_code == 401
    user = gateway.create_key()
    assert httpx.get(url, headers={"Authorization": f"Bearer {user}"}).status_code == 403
    admin = gateway.create_key(admin=True)
    state: dict[str, Any] = httpx.get(url, headers={"Authorization": f"Bearer {admin}"}).json()
    assert [m["name"] for m in state["models"]] == ["chat"]
    assert state["models"][0]["deployments"][0]["state"] == "healthy"
    # The page and its files are served with a strict content security policy.
    page = httpx.get(gateway.base_url + "/console")
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert httpx.get(gateway.base_url + "/console/console.js").headers[
        "content-type"].startswith("text/javascript")
    assert httpx.get(gateway.base_url + "/console/nope.js").status_code == 404


def test_the_console_shows_a_rollout_rolled_back_and_a_shadow(
        browser: Browser, make_gateway: Callable[..., GatewayServer],
        make_simulator: Callable[..., SimulatorServer]) -> None:
    stable, shadow = make_simulator(**FAST), make_simulator(**FAST)
    failing = make_simulator(**FAST, faults=[{"kind": "status", "status": 500, "rate": 0.3}])
    gw = make_gateway([{
        "name": "chat",
        "routing": {"retries": {"attempts": 3, "backoff_base": 0.001, "min_per_second": 100}},
        "deployments": [{"name": "v1", "url": stable.url, "version": "v1"},
                        {"name": "v2", "url": failing.url, "version": "v2"},
                        {"name": "v3", "url": shadow.url, "version": "v3"}],
        "rollout": {"candidate": "v2", "steps": [25, 100], "hold": "1h",
                    "gates": {"min_samples": 10}},
        "shadow": {"deployment": "v3", "percent": 50}}])
    admin = gw.create_key("ops", admin=True)
    user = gw.create_key("app")
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.goto(gw.base_url + "/console")
    page.fill("#key", admin)
    page.click("button[type=submit]")
    page.wait_for_selector('#rollouts tr[data-model="chat"][data-state="progressing"]')
    load = Load(gw, user)  # one key: its side is drawn again at each step
    try:
        users = itertools.count()
        with httpx.Client(timeout=10, headers={"Authorization": f"Bearer {user}"}) as client:
            def sessions() -> bool:
                for _ in range(10):  # new sessions: some land on the candidate's side
                    client.post(gw.v1 + "/chat/completions",
                                json={**CHAT, "user": f"session-{next(users)}"})
                return page.locator(
                    '#rollouts tr[data-model="chat"][data-state="rolled_back"]').count() == 1

            assert wait_until(sessions, 30)
        page.wait_for_selector('#signals tr[data-kind="rollout"]')
        assert "error rate" in page.locator('#rollouts tr[data-model="chat"]').inner_text()
        assert "v2 v2 (candidate)" in page.locator('tr[data-deployment="v2"]').inner_text()
        page.wait_for_function(
            "() => Number(document.querySelector('#shadows tbody tr td:nth-child(4)')"
            "?.textContent) > 0")
        shoot(page, "console-rollout.png")
    finally:
        load.stop()
    assert problems == [], problems
    page.close()
