"""Connections to upstream MCP servers, behind one ``request(method, params)``.

- **stdio**: the official ``mcp`` SDK's client over a child process's stdin and stdout.
- **Streamable HTTP**: a lean client of Ironhold's own on the gateway's aiohttp, speaking the
  handshake-era protocol (``initialize``, then ``Mcp-Session-Id`` on every request), every
  server answer as JSON or as an SSE stream (progress notifications, then the answer). A tool
  call is the hot path of the tool gateway, and the SDK's general client (anyio streams,
  pydantic models both ways) cost about a millisecond a call more; tests still put the SDK's
  own server behind it.

Library and protocol errors are translated here: a JSON-RPC error into ``RpcError``, a
connection that is gone (a child that exited, an endpoint that forgot the session or stopped
answering) into ``ConnectionLost``.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol, TextIO

import aiohttp
import orjson
from mcp.client.stdio import stdio_client
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED

from ironhold import __version__
from ironhold.config.mcp import McpServerConfig
from mcp import Client, StdioServerParameters

__all__ = ["Connection", "ConnectionLost", "Progress", "RpcError", "open_connection"]

#: Called with each progress notification of a call: progress, total, message.
Progress = ProgressFnT
PROTOCOL_VERSION = "2025-11-25"
_ACCEPTED_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26")
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
    """One session with a Streamable HTTP server."""

    def __init__(self, config: McpServerConfig, http: aiohttp.ClientSession):
        assert config.url is not None
        self._url = config.url
        self._http = http
        self._ids = itertools.count(1)
        self._headers = {"Accept": "application/json, text/event-stream",
                         "Content-Type": "application/json"}
        self.capabilities: dict[str, Any] = {}

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, config: McpServerConfig) -> AsyncIterator[HttpConnection]:
        headers = {k: v.get_secret_value() for k, v in config.headers.items()}
        timeout = aiohttp.ClientTimeout(total=None, connect=5.0, sock_read=config.timeout)
        async with aiohttp.ClientSession(headers=headers, timeout=timeout) as http:
            connection = cls(config, http)
            await connection._initialize()
            try:
                yield connection
            finally:
                await connection._end()

    async def _initialize(self) -> None:
        result = await self.request("initialize", {
            "protocolVersion": PROTOCOL_VERSION, "capabilities": {},
            "clientInfo": {"name": "ironhold", "version": __version__}})
        version = result.get("protocolVersion")
        if version not in _ACCEPTED_VERSIONS:
            raise ConnectionLost(f"the server speaks MCP {str(version)[:40]!r}, not one of "
                                 f"{', '.join(_ACCEPTED_VERSIONS)}")
        self._headers["MCP-Protocol-Version"] = version
        capabilities = result.get("capabilities")
        self.capabilities = capabilities if isinstance(capabilities, dict) else {}
        await self._send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    async def _end(self) -> None:
        if "Mcp-Session-Id" in self._headers:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with self._http.delete(self._url, headers=self._headers,
                                             timeout=aiohttp.ClientTimeout(total=2)):
                    pass

    async def request(self, method: str, params: dict[str, Any],
                      progress: Progress | None = None) -> dict[str, Any]:
        rpc_id = next(self._ids)
        token = f"ih-{rpc_id}" if progress is not None else None
        if token is not None:
            params = {**params, "_meta": {**params.get("_meta", {}), "progressToken": token}}
        message = {"jsonrpc": "2.0", "id": rpc_id, "method": method, "params": params}
        try:
            async with self._http.post(self._url, data=orjson.dumps(message),
                                       headers=self._headers) as response:
                if method == "initialize" and "Mcp-Session-Id" in response.headers:
                    self._headers["Mcp-Session-Id"] = response.headers["Mcp-Session-Id"]
                _check_status(response)
                if response.content_type == "text/event-stream":
                    answer = await _from_stream(response, rpc_id, token, progress)
                else:
                    answer = orjson.loads(await response.content.read(_MAX_MESSAGE))
        except (aiohttp.ClientError, orjson.JSONDecodeError) as exc:
            raise ConnectionLost(f"{type(exc).__name__}: {str(exc)[:200]}") from None
        return _result_of(answer)

    async def _send(self, message: dict[str, Any]) -> None:
        try:
            async with self._http.post(self._url, data=orjson.dumps(message),
                                       headers=self._headers) as response:
                _check_status(response)
        except aiohttp.ClientError as exc:
            raise ConnectionLost(f"{type(exc).__name__}: {str(exc)[:200]}") from None


def _check_status(response: aiohttp.ClientResponse) -> None:
    if response.status == 404:  # the server forgot the session (restarted)
        raise ConnectionLost("the server no longer knows the session")
    if response.status >= 400 and response.content_type != "application/json":
        raise ConnectionLost(f"the server answered HTTP {response.status}")


async def _from_stream(response: aiohttp.ClientResponse, rpc_id: int, token: str | None,
                       progress: Progress | None) -> Any:
    """The answer to ``rpc_id`` from an SSE stream, passing on its progress on the way."""
    data: list[bytes] = []
    async for raw in _lines(response):
        line = raw.rstrip(b"\r")
        if line.startswith(b"data:"):
            data.append(line[5:].lstrip(b" "))
            continue
        if line or not data:
            continue
        message = orjson.loads(b"\n".join(data))
        data = []
        if not isinstance(message, dict):
            continue
        if message.get("id") == rpc_id and "method" not in message:
            return message
        params = message.get("params")
        if (progress is not None and message.get("method") == "notifications/progress"
                and isinstance(params, dict) and params.get("progressToken") == token):
            await progress(float(params.get("progress", 0)), params.get("total"),
                           params.get("message"))
    raise ConnectionLost("the server's stream ended without an answer")


async def _lines(response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    """The stream's lines, however long (a large result is one ``data:`` line), each at most
    ``_MAX_MESSAGE`` bytes."""
    pending: list[bytes] = []  # the line so far, in pieces: each chunk is scanned once
    size = 0
    async for chunk in response.content.iter_any():
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
