"""Tool calls in the live console (real headless Chromium): who called which tool through
which delegation chain, what policy and the guard decided, and the audit record verified in
the browser."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from mcp.shared.exceptions import MCPError
from playwright.sync_api import Browser
from tests.e2e.test_console import browser  # noqa: F401 - the module's browser fixture
from tests.mcp.conftest import mcp_client
from tests.mcp.test_gateway import passport
from tests.servers import GatewayServer


def test_the_console_lists_tool_calls(browser: Browser,  # noqa: F811
                                      tool_gateway: GatewayServer) -> None:
    key = tool_gateway.create_key("treasurer")
    agent = passport(tool_gateway, key, "payments-bot")
    admin = tool_gateway.create_key("ops", admin=True)

    async def calls() -> None:
        async with mcp_client(tool_gateway, agent) as client:
            await client.call_tool("files.transfer", {"amount": 20, "to": "acme"})
            with pytest.raises(MCPError):
                await client.call_tool("files.transfer", {"amount": 500, "to": "acme"})
            with pytest.raises(MCPError):
                await client.call_tool("files.fetch_page", {"url": "https://news.example"})

    # Playwright's sync API runs an event loop in this thread: the agent's calls get their own.
    with ThreadPoolExecutor(1) as thread:
        thread.submit(asyncio.run, calls()).result(60)
    state = httpx.get(tool_gateway.base_url + "/admin/console/state", timeout=10,
                      headers={"Authorization": f"Bearer {admin}"}).json()
    assert [c["outcome"] for c in state["tool_calls"]] == ["blocked", "denied", "ok"]
    assert "arguments" not in state["tool_calls"][0]  # names and decisions, never content

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(tool_gateway.base_url + "/console")
    page.fill("#key", admin)
    page.click("button[type=submit]")
    page.wait_for_selector('#tool-calls tr[data-outcome="denied"]')
    denied = page.locator('#tool-calls tr[data-outcome="denied"]').inner_text()
    assert "files.transfer" in denied and "agent:payments-bot" in denied
    assert "no-large-delegated-transfers" in denied
    blocked = page.locator('#tool-calls tr[data-outcome="blocked"]').inner_text()
    assert "prompt_injection:block" in blocked
    page.locator('#tool-calls tr[data-outcome="ok"] button', has_text="verify").click()
    page.wait_for_selector("#proof.verified", timeout=10_000)
    assert problems == [], problems
    page.close()
