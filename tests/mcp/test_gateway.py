"""The MCP tool gateway end to end: the official SDK as the agent's client, real tool servers
(HTTP and stdio) behind the gateway, the real policy engine, guard and audit log."""

from __future__ import annotations

import asyncio

import pytest
from mcp.shared.exceptions import MCPError

from tests.mcp.conftest import mcp_client
from tests.servers import GatewayServer


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_lists_only_the_tools_policy_permits(tool_gateway: GatewayServer) -> None:
    reader = tool_gateway.create_key("reader")
    writer = tool_gateway.create_key("writer")

    async def names(key: str) -> set[str]:
        async with mcp_client(tool_gateway, key) as client:
            return {t.name for t in (await client.list_tools()).tools}

    seen_by_reader = run(names(reader))
    assert "files.read_file" in seen_by_reader
    assert "local.echo" in seen_by_reader
    assert "files.write_file" not in seen_by_reader
    assert "files.write_file" in run(names(writer))


def test_calls_are_decided_on_their_arguments(tool_gateway: GatewayServer) -> None:
    key = tool_gateway.create_key("reader")

    async def go() -> None:
        async with mcp_client(tool_gateway, key) as client:
            ok = await client.call_tool("files.read_file", {"path": "/srv/reports/q3.txt"})
            assert not ok.is_error
            assert "Revenue grew" in ok.content[0].text
            for path in ("/etc/passwd", "/srv/reports/../../etc/passwd"):
                with pytest.raises(MCPError) as refused:
                    await client.call_tool("files.read_file", {"path": path})
                assert refused.value.data["code"] == "policy_denied"
            with pytest.raises(MCPError) as refused:
                await client.call_tool("files.write_file", {"path": "/tmp/x", "content": "y"})
            assert refused.value.data["code"] == "policy_denied"

    run(go())
