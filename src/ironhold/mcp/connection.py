"""Connections to upstream MCP servers, behind one ``request(method, params)``.

- **stdio**: the official ``mcp`` SDK's client over a child process's stdin and stdout.
- **Streamable HTTP**: a lean client of Ironhold's own on its HTTP/1.1 transport
  (``upstream.http``), speaking the handshake-era protocol (``initialize``, then
  ``Mcp-Session-Id`` on every request), every server answer as JSON or as an SSE stream
  (progress notifications, then the answer). A tool
  call is the hot path of the tool gateway: the SDK's general client (anyio streams, pydantic
  models both ways, httpx) cost about a millisecond of CPU a call more. Tests put the SDK's own
  server behind it.

Library and protocol errors are translated here: a JSON-RPC error into ``RpcError``, a
connection that is gone (a child that exited, an endpoint that forgot the session or stopped
answering) into ``ConnectionLost``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol, TextIO

import orjson
from mcp.client.stdio import stdio_client
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED

from ironhold import __version__
from ironhold.config.mcp import McpServerConfig
from ironhold.core.errors import UpstreamError, UpstreamTimeoutError
from ironhold.upstream.http import HttpResponse, HttpTransport
from ironhold.upstream.transport import Deadlines, UpstreamRequest
from mcp import Client, StdioServerParameters

__all__ = ["PROTOCOL_VERSIONS", "Connection", "ConnectionLost", "Progress", "RpcError",
           "open_connection"]

#: Called with each progress notification of a call: progress, total, message.
Progress = ProgressFnT
#: The handshake-era revisions spoken, newest first (by the gateway to agents and to servers).
PROTOCOL_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26")
#: The largest SSE event or JSON answer read from a tool server.
_MAX_MESSAGE = 64 * 1024 * 1024


class RpcError(Exception):
    """The server answered a request with a JSON-RPC error."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class ConnectionLost(Exception):
    """The connection is gone; the server must be connected to again."""


class Connection(Protocol):
    #: What the server said it offers (``tools``, ``resources``, ``prompts``, ...).
    capabilities: dict[str, Any]

    async def request(self, method: str, params: dict[str, Any],
                      progress: Progress | None = None) -> dict[str, Any]: ...


@contextlib.asynccontextmanager
async def open_connection(config: McpServerConfig, base_dir: Path,
                          errlog: TextIO) -> AsyncIterator[Connection]:
    if config.url is not None:
        async with HttpConnection.open(config) as http:
            yield http
        return
    assert config.command is not None
    cwd = base_dir / config.cwd if config.cwd else base_dir
    params = StdioServerParameters(command=config.command[0], args=config.command[1:],
                                   env=config.env or None, cwd=str(cwd))
    async with Client(stdio_client(params, errlog=errlog), cache=None,
                      read_timeout_seconds=config.timeout) as client:
        yield SdkConnection(client)


class SdkConnection:
    """The SDK's client, answering in plain JSON."""

    def __init__(self, client: Client):
        self._client = client
        self.capabilities = client.server_capabilities.model_dump(exclude_none=True)

    async def request(self, method: str, params: dict[str, Any],
                      progress: Progress | None = None) -> dict[str, Any]:
        c = self._client
        try:
            if method == "tools/call":
                result: Any = await c.call_tool(params["name"], params.get("arguments") or {},
                                                progress_callback=progress)
            elif method == "tools/list":
                result = await c.list_tools(cursor=params.get("cursor"))
            elif method == "resources/list":
                result = await c.list_resources(cursor=params.get("cursor"))
            elif method == "prompts/list":
                result = await c.list_prompts(cursor=params.get("cursor"))
            elif method == "resources/read":
                result = await c.read_resource(params["uri"])
            elif method == "prompts/get":
                result = await c.get_prompt(params["name"], params.get("arguments"))
            elif method == "ping":
                result = await c.send_ping()
            else:
                raise RpcError(-32601, f"{method} is not forwarded")
        except MCPError as exc:
            if exc.code == CONNECTION_CLOSED:
                raise ConnectionLost(exc.message) from None
            raise RpcError(exc.code, exc.message) from None
        out: dict[str, Any] = result.model_dump(mode="json", by_alias=True, exclude_none=True)
        return out


class HttpConnection:
    """One session with a Streamable HTTP server, over the gateway's own HTTP/1.1 transport
    (``upstream.http``: kept connections, a fraction of a general client's CPU)."""

    def __init__(self, config: McpServerConfig, transport: HttpTransport):
        self._transport = transport
        self._ids = itertools.count(1)
        self._deadlines = Deadlines(connect=5.0, first_token=config.timeout,
                                    total=config.timeout)
        self._headers = {"Accept": "application/json, text/event-stream",
                         **{k: v.get_secret_value() for k, v in config.headers.items()}}
        self.capabilities: dict[str, Any] = {}

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, config: McpServerConfig) -> AsyncIterator[HttpConnection]:
        assert config.url is not None
        transport = HttpTransport(config.url, max_connections=64, peer="tool server")
        try:
            connection = cls(config, transport)
            await connection._initialize()
            try:
                yield connection
            finally:
                await connection._end()
        finally:
            await transport.close()

    async def _initialize(self) -> None:
        result = await self.request("initialize", {
            "protocolVersion": PROTOCOL_VERSIONS[0], "capabilities": {},
            "clientInfo": {"name": "ironhold", "version": __version__}})
        version = result.get("protocolVersion")
        if version not in PROTOCOL_VERSIONS:
            raise ConnectionLost(f"the server speaks MCP {str(version)[:40]!r}, not one of "
                                 f"{', '.join(PROTOCOL_VERSIONS)}")
        self._headers["MCP-Protocol-Version"] = version
        capabilities = result.get("capabilities")
        self.capabilities = capabilities if isinstance(capabilities, dict) else {}
        response = await self._post({"jsonrpc": "2.0", "method": "notifications/initialized"})
        await response.read()

    async def _end(self) -> None:
        """Tell the server the session is over (best effort: it may be gone already)."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2):
                await (await self._post(None)).read()

    async def request(self, method: str, params: dict[str, Any],
                      progress: Progress | None = None) -> dict[str, Any]:
        rpc_id = next(self._ids)
        token = f"ih-{rpc_id}" if progress is not None else None
        if token is not None:
            params = {**params, "_meta": {**params.get("_meta", {}), "progressToken": token}}
        response = await self._post({"jsonrpc": "2.0", "id": rpc_id, "method": method,
                                     "params": params})
        try:
            if method == "initialize" and "mcp-session-id" in response.headers:
                self._headers["Mcp-Session-Id"] = response.headers["mcp-session-id"]
            if response.status == 404:  # the server forgot the session (restarted)
                raise ConnectionLost("the server no longer knows the session")
            kind = response.headers.get("content-type", "")
            if response.status >= 400 and not kind.startswith("application/json"):
                raise ConnectionLost(f"the server answered HTTP {response.status}")
            if kind.startswith("text/event-stream"):
                answer = await _from_stream(response.chunks(), rpc_id, token, progress)
            else:
                answer = orjson.loads(await response.read())
        except UpstreamTimeoutError:
            raise TimeoutError from None
        except (UpstreamError, orjson.JSONDecodeError) as exc:
            raise ConnectionLost(str(exc)[:200]) from None
        finally:
            response.close()
        return _result_of(answer)

    async def _post(self, message: dict[str, Any] | None) -> HttpResponse:
        """POST ``message`` (None: DELETE the session)."""
        try:
            if message is None:
                return await self._transport.delete("", self._headers, self._deadlines)
            return await self._transport.send(UpstreamRequest(
                "", orjson.dumps(message), True, self._deadlines, self._headers))
        except UpstreamTimeoutError:
            raise TimeoutError from None
        except UpstreamError as exc:
            raise ConnectionLost(str(exc)[:200]) from None


async def _from_stream(chunks: AsyncIterator[bytes], rpc_id: int, token: str | None,
                       progress: Progress | None) -> Any:
    """The answer to ``rpc_id`` from an SSE stream, passing on its progress on the way; the
    stream is read to its end (the server ends it after the answer), so the connection can
    be used again."""
    answer: Any = None
    data: list[bytes] = []
    async for raw in _lines(chunks):
        line = raw.rstrip(b"\r")
        if line.startswith(b"data:"):
            data.append(line[5:].lstrip(b" "))
            continue
        if line or not data:
            continue
        message = orjson.loads(b"\n".join(data))
        data = []
        if not isinstance(message, dict) or answer is not None:
            continue
        if message.get("id") == rpc_id and "method" not in message:
            answer = message
            continue
        params = message.get("params")
        if (progress is not None and message.get("method") == "notifications/progress"
                and isinstance(params, dict) and params.get("progressToken") == token):
            await progress(float(params.get("progress", 0)), params.get("total"),
                           params.get("message"))
    if answer is None:
        raise ConnectionLost("the server's stream ended without an answer")
    return answer


async def _lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The stream's lines, however long (a large result is one ``data:`` line), each at most
    ``_MAX_MESSAGE`` bytes."""
    pending: list[bytes] = []  # the line so far, in pieces: each chunk is scanned once
    size = 0
    async for chunk in chunks:
        start = 0
        while (end := chunk.find(b"\n", start)) != -1:
            pending.append(chunk[start:end])
            yield b"".join(pending)
            pending, size, start = [], 0, end + 1
        if start < len(chunk):
            pending.append(chunk[start:])
            size += len(chunk) - start
            if size > _MAX_MESSAGE:
                raise ConnectionLost("the server sent a message over the size limit")
    if pending:
        yield b"".join(pending)


def _result_of(answer: Any) -> dict[str, Any]:
    if not isinstance(answer, dict):
        raise ConnectionLost("the server's answer is not a JSON-RPC message")
    error = answer.get("error")
    if isinstance(error, dict):
        raise RpcError(int(error.get("code", -32603)), str(error.get("message", ""))[:500])
    result = answer.get("result")
    if not isinstance(result, dict):
        raise ConnectionLost("the server's answer has no result")
    return result
