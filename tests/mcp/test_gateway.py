"""The MCP tool gateway end to end: the official SDK as the agent's client, real tool servers
(HTTP in its own process, stdio started by the gateway), the real policy engine, guard and
audit log."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import httpx
import orjson
import pytest
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult, TextContent
from tests.helpers import wait_until
from tests.mcp.conftest import mcp_client
from tests.servers import GatewayServer

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def text_of(result: CallToolResult) -> str:
    return "".join(c.text for c in result.content if isinstance(c, TextContent))


async def call(gw: GatewayServer, key: str, tool: str, arguments: dict[str, Any]) -> str:
    async with mcp_client(gw, key) as client:
        return text_of(await client.call_tool(tool, arguments))


async def refusal(gw: GatewayServer, key: str, tool: str, arguments: dict[str, Any]
                  ) -> dict[str, Any]:
    """The ``data`` of the JSON-RPC error a refused call gets."""
    async with mcp_client(gw, key) as client:
        with pytest.raises(MCPError) as refused:
            await client.call_tool(tool, arguments)
    data: dict[str, Any] = refused.value.data
    return data


def passport(gw: GatewayServer, key: str, agent: str) -> str:
    answer = httpx.post(gw.base_url + "/oauth/token", timeout=10, data={
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "subject_token": key, "actor_token": agent,
        "actor_token_type": "urn:ironhold:params:oauth:token-type:agent"})
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["access_token"]
    return token


def test_lists_only_the_tools_policy_permits(tool_gateway: GatewayServer) -> None:
    reader = tool_gateway.create_key("reader")
    writer = tool_gateway.create_key("writer")

    async def names(key: str) -> set[str]:
        async with mcp_client(tool_gateway, key) as client:
            return {t.name for t in (await client.list_tools()).tools}

    seen_by_reader = run(names(reader))
    # Namespaced by server; read_file is listed although only some paths are allowed.
    assert {"files.read_file", "files.echo", "local.echo", "local.pid"} <= seen_by_reader
    assert "files.write_file" not in seen_by_reader
    assert "files.write_file" in run(names(writer))


def test_calls_are_decided_on_their_arguments(tool_gateway: GatewayServer) -> None:
    key = tool_gateway.create_key("reader")
    assert "Revenue grew" in run(call(tool_gateway, key, "files.read_file",
                                      {"path": "/srv/reports/q3.txt"}))
    for path in ("/etc/passwd", "/srv/reports/../../etc/passwd"):
        assert run(refusal(tool_gateway, key, "files.read_file", {"path": path}))["code"] \
            == "policy_denied"
    assert run(refusal(tool_gateway, key, "files.write_file",
                       {"path": "/tmp/x", "content": "y"}))["code"] == "policy_denied"
    # Arguments must match the tool's own input schema before policy sees them.
    invalid = run(refusal(tool_gateway, key, "files.read_file", {"path": 7}))
    assert invalid["code"] == "invalid_arguments"
    assert run(refusal(tool_gateway, key, "files.nope", {}))["code"] == "unknown_tool"


def test_a_delegated_agent_may_not_move_more_than_100(tool_gateway: GatewayServer) -> None:
    key = tool_gateway.create_key("treasurer")
    agent = passport(tool_gateway, key, "payments-bot")
    assert "sent 50" in run(call(tool_gateway, agent, "files.transfer",
                                 {"amount": 50, "to": "acme"}))
    for amount in (100.5, 500):
        data = run(refusal(tool_gateway, agent, "files.transfer", {"amount": amount,
                                                                     "to": "acme"}))
        assert data["code"] == "policy_denied"
    # The key itself (no delegation) may.
    assert "sent 500" in run(call(tool_gateway, key, "files.transfer",
                                  {"amount": 500, "to": "acme"}))


def test_a_poisoned_tool_result_never_reaches_the_agent(tool_gateway: GatewayServer) -> None:
    key = tool_gateway.create_key("reader")
    data = run(refusal(tool_gateway, key, "files.fetch_page", {"url": "https://news.example"}))
    assert data["code"] == "guard_blocked"
    assert data["category"] == "prompt_injection"


def test_secrets_are_kept_in_both_directions(tool_gateway: GatewayServer) -> None:
    key = tool_gateway.create_key("reader")
    leaving = run(refusal(tool_gateway, key, "files.echo",
                          {"text": "use AKIAIOSFODNN7EXAMPLE for the upload"}))
    assert leaving["code"] == "guard_blocked"
    answer = run(call(tool_gateway, key, "files.read_file",
                      {"path": "/srv/reports/leak.txt"}))
    assert "AKIAIOSFODNN7EXAMPLE" not in answer
    assert "The deploy key is" in answer


def test_the_client_token_never_reaches_the_tool_server(tool_gateway: GatewayServer) -> None:
    key = tool_gateway.create_key("reader")
    seen = run(call(tool_gateway, key, "files.seen_credentials", {}))
    assert "Bearer upstream-own" in seen
    assert key not in seen


def test_a_dead_stdio_server_is_restarted(tool_gateway: GatewayServer) -> None:
    key = tool_gateway.create_key("reader")
    first = int(run(call(tool_gateway, key, "local.pid", {})))
    os.kill(first, signal.SIGKILL)

    async def pid() -> int | None:
        async with mcp_client(tool_gateway, key) as client:
            try:
                return int(text_of(await client.call_tool("local.pid", {})))
            except MCPError as exc:  # down until it is started again: a clear 503, no hang
                assert exc.error.data["code"] == "tool_server_unavailable"
                return None

    def restarted() -> bool:
        now = run(pid())
        return now is not None and now != first

    wait_until(restarted, 30)
    servers = httpx.get(tool_gateway.base_url + "/admin/mcp", timeout=10, headers={
        "Authorization": f"Bearer {tool_gateway.create_key('ops', admin=True)}"}).json()
    local = next(s for s in servers["servers"] if s["name"] == "local")
    assert local["state"] == "up" and local["reconnects"] >= 1


def test_tools_calls_are_audited_with_the_whole_chain(tool_gateway: GatewayServer) -> None:
    key = tool_gateway.create_key("treasurer")
    agent = passport(tool_gateway, key, "payments-bot")

    async def go() -> None:
        async with mcp_client(tool_gateway, agent) as client:
            await client.call_tool("files.transfer", {"amount": 20, "to": "acme"})
            with pytest.raises(MCPError):
                await client.call_tool("files.transfer", {"amount": 2000, "to": "acme"})

    run(go())
    records = tool_records(tool_gateway)
    allowed, refused = records[-2], records[-1]
    assert allowed["server"] == "files" and allowed["tool"] == "transfer"
    assert allowed["outcome"] == "ok" and allowed["policy"]["policies"] == ["transfers"]
    assert allowed["principal"]["chain"][1] == "agent:payments-bot"
    assert len(allowed["arguments_sha256"]) == 64 and len(allowed["result_sha256"]) == 64
    assert refused["outcome"] == "denied" and refused["error"] == "policy_denied"
    assert refused["policy"]["policies"] == ["no-large-delegated-transfers"]


def audit_records(gw: GatewayServer) -> list[dict[str, Any]]:
    audit = gw.gateway.audit
    assert audit is not None
    return [orjson.loads(stored.record) for stored in audit.log.store.records()]


def tool_records(gw: GatewayServer, kind: str = "tool") -> list[dict[str, Any]]:
    """Every record of ``kind`` in the audit log, oldest first, once every call's full record
    has followed its intent (an answered call waited only for its intent)."""

    def complete() -> bool:
        records = audit_records(gw)
        return ({r["request_id"] for r in records if r["kind"] == "tool_intent"}
                <= {r["request_id"] for r in records if r["kind"] == "tool"})

    assert wait_until(complete)
    return [r for r in audit_records(gw) if r["kind"] == kind]


def test_a_calls_intent_is_durable_before_its_result_is_passed_on(
        tool_gateway: GatewayServer) -> None:
    key = tool_gateway.create_key("treasurer")
    agent = passport(tool_gateway, key, "payments-bot")

    def intents() -> list[dict[str, Any]]:
        return [r for r in audit_records(tool_gateway) if r["kind"] == "tool_intent"]

    before = len(intents())

    async def go() -> list[dict[str, Any]]:
        async with mcp_client(tool_gateway, agent) as client:
            await client.call_tool("files.transfer", {"amount": 20, "to": "acme"})
            return intents()  # read at once: the answer waited for it

    seen = run(go())
    assert len(seen) == before + 1
    intent = seen[-1]
    full = next(r for r in tool_records(tool_gateway) if r["request_id"] == intent["request_id"])
    # The intent says who called what, with which arguments, under which decision; the
    # full record adds how it ended.
    for same in ("principal", "server", "tool", "tool_digest", "policy", "limits",
                 "arguments_sha256", "session"):
        assert intent[same] == full[same], same
    assert intent["principal"]["chain"][1] == "agent:payments-bot"
    assert not {"result_sha256", "outcome", "latency_ms"} & intent.keys()
    assert full["outcome"] == "ok" and len(full["result_sha256"]) == 64


@pytest.mark.parametrize("on_error", ["closed", "open"])
def test_a_result_is_not_passed_on_unrecorded(make_tool_gateway: Callable[..., GatewayServer],
                                              on_error: str) -> None:
    gw = make_tool_gateway(audit={"on_store_error": on_error})
    key = gw.create_key("reader")
    assert run(call(gw, key, "files.echo", {"text": "recorded"})) == "recorded"
    assert gw.gateway.audit is not None
    tool_records(gw)  # the first call's full record is in before the table goes
    with gw.gateway.audit.log.store.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE ironhold_audit_records")
    if on_error == "closed":
        data = run(refusal(gw, key, "files.echo", {"text": "unrecorded"}))
        assert data["code"] == "audit_unavailable" and data["status"] == 503
    else:
        assert run(call(gw, key, "files.echo", {"text": "unrecorded"})) == "unrecorded"


def test_progress_notifications_reach_the_agent(tool_gateway: GatewayServer) -> None:
    key = tool_gateway.create_key("reader")
    seen: list[tuple[float, float | None, str | None]] = []

    async def go() -> str:
        async def report(progress: float, total: float | None, message: str | None) -> None:
            seen.append((progress, total, message))

        async with mcp_client(tool_gateway, key) as client:
            return text_of(await client.call_tool("files.slow", {"steps": 3},
                                                  progress_callback=report))

    assert run(go()) == "done after 3 steps"
    assert seen == [(1, 3, "step 1"), (2, 3, "step 2"), (3, 3, "step 3")]


def test_limits_per_caller_and_tool(make_tool_gateway: Callable[..., GatewayServer]) -> None:
    gw = make_tool_gateway(mcp={"limits": {"rpm": 2}})
    key = gw.create_key("reader")

    async def go() -> dict[str, Any]:
        async with mcp_client(gw, key) as client:
            for _ in range(2):
                await client.call_tool("files.echo", {"text": "hi"})
            await client.call_tool("local.echo", {"text": "another tool, its own count"})
            with pytest.raises(MCPError) as limited:
                await client.call_tool("files.echo", {"text": "hi"})
        data: dict[str, Any] = limited.value.data
        return data

    data = run(go())
    assert data["code"] == "rate_limit_exceeded" and data["retry_after"] > 0


def test_resources_and_prompts_are_namespaced(tool_gateway: GatewayServer) -> None:
    key = tool_gateway.create_key("reader")

    async def go() -> None:
        async with mcp_client(tool_gateway, key) as client:
            prompts = {p.name for p in (await client.list_prompts()).prompts}
            assert prompts == {"files.summarise", "local.summarise"}
            got = await client.get_prompt("local.summarise", {"name": "q3"})
            assert "q3" in got.messages[0].content.text  # type: ignore[union-attr]
            resources = (await client.list_resources()).resources
            assert [str(r.uri) for r in resources] == ["file:///srv/reports/index.txt"]
            read = await client.read_resource("file:///srv/reports/index.txt")
            assert read.contents[0].text == "q3.txt"  # type: ignore[union-attr]

    run(go())


def test_an_http_tool_server_that_goes_away_is_retried(tool_gateway: GatewayServer,
                                                      http_tools: Any) -> None:
    key = tool_gateway.create_key("reader")
    assert run(call(tool_gateway, key, "files.echo", {"text": "before"})) == "before"
    http_tools.stop()

    async def echo() -> str | None:
        async with mcp_client(tool_gateway, key) as client:
            try:
                return text_of(await client.call_tool("files.echo", {"text": "after"}))
            except MCPError as exc:  # a fast, clear 503 while it is away: never a hang
                assert exc.error.data["code"] == "tool_server_unavailable", exc.error.data
                return None

    assert wait_until(lambda: run(echo()) is None, 30)
    # Other servers carry on meanwhile.
    assert run(call(tool_gateway, key, "local.echo", {"text": "still"})) == "still"
    http_tools.start()
    assert wait_until(lambda: run(echo()) == "after", 60)


def test_a_result_over_the_size_limit_is_refused(
        make_tool_gateway: Callable[..., GatewayServer]) -> None:
    gw = make_tool_gateway(mcp={"max_result_bytes": 1024})
    key = gw.create_key("reader")
    assert run(call(gw, key, "files.echo", {"text": "short"})) == "short"
    data = run(refusal(gw, key, "files.echo", {"text": "x" * 4000}))
    assert data["code"] == "result_too_large"
    record = tool_records(gw)[-1]
    assert record["outcome"] == "failed" and record["error"] == "result_too_large"
