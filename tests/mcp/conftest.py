"""Fixtures for the MCP tool gateway: real tool servers made with the official ``mcp`` SDK (one
over Streamable HTTP in its own process, one over stdio started by the gateway), a gateway with
a Cedar policy, and the SDK's client talking to the gateway's ``/mcp``."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp.client.streamable_http import streamable_http_client
from tests.servers import GatewayServer, free_port

from mcp import Client

TOOL_SERVER = Path(__file__).with_name("tool_server.py")

POLICY = """
// Read only under /srv/reports, never with ".." in the path.
@id("read-reports")
permit(principal, action == Ironhold::Action::"call_tool",
       resource == Ironhold::Tool::"files.read_file")
when {
  context.arguments.hasTag("path") &&
  context.arguments.getTag("path").text like "/srv/reports/*" &&
  !(context.arguments.getTag("path").text like "*..*")
};

// Every tool of the local server, and the harmless files tools, for anyone.
@id("local-tools")
permit(principal, action == Ironhold::Action::"call_tool",
       resource in Ironhold::ToolServer::"local");
@id("harmless-files-tools")
permit(principal, action == Ironhold::Action::"call_tool", resource)
when { [Ironhold::Tool::"files.fetch_page", Ironhold::Tool::"files.echo",
        Ironhold::Tool::"files.slow", Ironhold::Tool::"files.seen_credentials"]
       .contains(resource) };

// Writing only for a key named "writer".
@id("writers-write")
permit(principal is Ironhold::ServiceKey, action == Ironhold::Action::"call_tool",
       resource == Ironhold::Tool::"files.write_file")
when { principal.name == "writer" };

// Transfers, but none over 100 for anyone acting on someone's behalf.
@id("transfers")
permit(principal, action == Ironhold::Action::"call_tool",
       resource == Ironhold::Tool::"files.transfer");
@id("no-large-delegated-transfers")
forbid(principal, action == Ironhold::Action::"call_tool",
       resource == Ironhold::Tool::"files.transfer")
when {
  context.delegation_depth > 0 && context.arguments.hasTag("amount") &&
  context.arguments.getTag("amount").number > 100
};

@id("models")
permit(principal, action in Ironhold::Action::"model_use", resource);
@id("delegate")
permit(principal, action == Ironhold::Action::"delegate", resource);
@id("admins")
permit(principal, action in Ironhold::Action::"admin", resource) when { principal.admin };
"""


class HttpToolServer:
    def __init__(self, variant: str = "") -> None:
        self.port = free_port()
        self.variant = variant
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def start(self) -> None:
        env = {"TOOL_VARIANT": self.variant, "PATH": "/usr/bin:/bin"}
        self.process = subprocess.Popen([sys.executable, str(TOOL_SERVER), "--http",
                                         str(self.port)], env=env)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 1).close()
                return
            except OSError:
                assert self.process.poll() is None, "the tool server exited"
                assert time.monotonic() < deadline, "the tool server did not start in 30 s"
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


@pytest.fixture
def http_tools() -> Iterator[HttpToolServer]:
    server = HttpToolServer()
    yield server
    server.stop()


def mcp_section(http_url: str, **extra: Any) -> dict[str, Any]:
    return {"servers": [
        {"name": "files", "url": http_url, "headers": {"Authorization": "Bearer upstream-own"}},
        {"name": "local", "command": [sys.executable, str(TOOL_SERVER)]},
    ], **extra}


@pytest.fixture
def make_tool_gateway(make_gateway: Callable[..., GatewayServer], http_tools: HttpToolServer,
                      simulator: Any, tmp_path: Path) -> Callable[..., GatewayServer]:
    """A gateway with the policy above, both tool servers, and ``mcp`` settings of a test's
    own; other config sections as keywords."""
    (tmp_path / "policy.cedar").write_text(POLICY)

    def make(mcp: dict[str, Any] | None = None, **sections: Any) -> GatewayServer:
        return make_gateway([{"name": "chat", "deployments": [
            {"url": simulator.url, "model": "sim-upstream"}]}],
            policy={"files": ["policy.cedar"]},
            mcp=mcp_section(http_tools.url, **(mcp or {})), **sections)

    return make


@pytest.fixture
def tool_gateway(make_tool_gateway: Callable[..., GatewayServer]) -> GatewayServer:
    return make_tool_gateway()


@asynccontextmanager
async def mcp_client(gateway: GatewayServer, token: str, **options: Any
                     ) -> AsyncIterator[Client]:
    """The official SDK's client on the gateway's /mcp, with ``token`` as its credential."""
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=30)
    async with http, Client(streamable_http_client(gateway.base_url + "/mcp", http_client=http),
                            cache=None, **options) as client:
        yield client
