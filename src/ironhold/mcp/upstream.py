"""One upstream MCP server, kept connected: a supervised stdio child process or a remote
Streamable HTTP endpoint, reached with the official ``mcp`` SDK's client.

A connection is owned by one task (the SDK's client lives in anyio task groups, which must be
entered and left by the same task). That task connects, reads the server's tools, resources
and prompts, then pings it and reads its listings again from time to time. When the server
dies (a child process that exits, an endpoint that stops answering), calls to it fail fast
with 503 and the task connects again with a growing back-off: a stdio server is restarted,
an HTTP one is ejected and retried, as model deployments are.

Library errors are translated here: a JSON-RPC error from the server becomes
``ToolServerError`` (passed on with its code), anything that breaks the connection
``UpstreamUnavailableError``, a call past its deadline ``UpstreamTimeoutError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import IO, Any, Literal

import httpx2
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED

from ironhold.config.mcp import McpServerConfig
from ironhold.core.errors import (
    ToolServerError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from mcp import Client, StdioServerParameters

__all__ = ["Listing", "Progress", "ToolServer"]

log = logging.getLogger("ironhold.mcp")

#: Called with each progress notification of a call: progress, total, message.
Progress = ProgressFnT
#: Called after every listing with the server, so the catalogue can follow.
Listing = Callable[["ToolServer"], Awaitable[None]]

#: Pages of a listing read at most (a server that pages for ever is cut off).
_MAX_PAGES = 50
_PING_EVERY = 5.0
_BACKOFF = (0.25, 30.0)
#: JSON-RPC's "method not found": a server without resources or prompts.
_METHOD_NOT_FOUND = -32601


class ToolServer:
    def __init__(self, config: McpServerConfig, base_dir: Path, refresh: float,
                 log_dir: Path | None = None):
        self.config = config
        self.name = config.name
        self._base_dir = base_dir
        self._refresh = refresh
        self._log_dir = log_dir
        self.state: Literal["starting", "up", "down", "stopped"] = "starting"
        #: Connections made since the first (restarts of a stdio server, reconnections).
        self.reconnects = 0
        self.last_error: str | None = None
        self.retry_at: float | None = None
        self.tools: list[dict[str, Any]] = []
        self.resources: list[dict[str, Any]] = []
        self.prompts: list[dict[str, Any]] = []
        self.listed_at = 0.0
        self.on_listing: Listing | None = None
        self._client: Client | None = None
        self._broken = asyncio.Event()
        self._up = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Connect in the background; wait up to ``connect_timeout`` for the first listing.
        A server that is not up by then is retried: the gateway starts without it."""
        self._task = asyncio.create_task(self._run(), name=f"mcp-server-{self.name}")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._up.wait(), self.config.connect_timeout)
        if self.state != "up":
            log.warning("mcp_server_not_up", extra={"server": self.name,
                                                    "error": self.last_error})

    async def stop(self) -> None:
        self.state = "stopped"
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _run(self) -> None:
        delay = _BACKOFF[0]
        first = True
        while True:
            try:
                async with self._connect() as client:
                    if not first:
                        self.reconnects += 1
                    first = False
                    await self._list(client)
                    self._client, self.state, self.last_error = client, "up", None
                    self.retry_at = None
                    self._broken.clear()
                    self._up.set()
                    delay = _BACKOFF[0]
                    await self._watch(client)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # an ExceptionGroup from the SDK's task groups too
                if isinstance(exc, KeyboardInterrupt | SystemExit):
                    raise
                self.last_error = _describe(exc)
                log.warning("mcp_server_down", extra={"server": self.name,
                                                      "error": self.last_error})
            finally:
                self._client = None
                self._up.clear()
                if self.state != "stopped":
                    self.state = "down"
            self.retry_at = time.time() + delay
            await asyncio.sleep(delay)
            delay = min(delay * 2, _BACKOFF[1])

    async def _watch(self, client: Client) -> None:
        """Until the connection breaks: ping it, and read the listings again when due."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._broken.wait(), min(_PING_EVERY, self._refresh))
            if self._broken.is_set():
                raise ConnectionError(self.last_error or "the connection broke")
            try:
                await asyncio.wait_for(client.send_ping(), self.config.timeout)
            except MCPError as exc:
                # Any answer proves the connection (2026 servers no longer know ``ping``).
                if exc.code == CONNECTION_CLOSED:
                    raise
            if time.monotonic() - self.listed_at >= self._refresh:
                await self._list(client)

    @contextlib.asynccontextmanager
    async def _connect(self) -> AsyncIterator[Client]:
        c = self.config
        if c.url is not None:
            headers = {k: v.get_secret_value() for k, v in c.headers.items()}
            http = httpx2.AsyncClient(headers=headers,
                                      timeout=httpx2.Timeout(c.timeout, connect=5.0))
            async with http, Client(streamable_http_client(c.url, http_client=http),
                                    cache=None, read_timeout_seconds=c.timeout) as client:
                yield client
            return
        assert c.command is not None
        cwd = self._base_dir / c.cwd if c.cwd else self._base_dir
        params = StdioServerParameters(command=c.command[0], args=c.command[1:],
                                       env=c.env or None, cwd=str(cwd))
        with self._errlog() as errlog:
            async with Client(stdio_client(params, errlog=errlog), cache=None,
                              read_timeout_seconds=c.timeout) as client:
                yield client

    @contextlib.contextmanager
    def _errlog(self) -> Any:
        """Where a stdio server's stderr goes: its own log file beside the gateway's, or
        nowhere."""
        path = (self._log_dir / f"mcp-{self.name}.log") if self._log_dir else Path(os.devnull)
        stream: IO[str] = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed below
        try:
            yield stream
        finally:
            stream.close()

    async def _list(self, client: Client) -> None:
        self.tools = await self._pages(lambda cursor: client.list_tools(cursor=cursor), "tools")
        caps = client.server_capabilities
        self.resources = (await self._pages(lambda cursor: client.list_resources(cursor=cursor),
                                            "resources") if caps.resources else [])
        self.prompts = (await self._pages(lambda cursor: client.list_prompts(cursor=cursor),
                                          "prompts") if caps.prompts else [])
        self.listed_at = time.monotonic()
        if self.on_listing is not None:
            await self.on_listing(self)

    async def _pages(self, fetch: Callable[[str | None], Awaitable[Any]],
                     key: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        cursor: str | None = None
        for _ in range(_MAX_PAGES):
            try:
                page = await asyncio.wait_for(fetch(cursor), self.config.timeout)
            except MCPError as exc:
                if exc.code == _METHOD_NOT_FOUND:
                    return out
                raise
            out.extend(item.model_dump(mode="json", by_alias=True, exclude_none=True)
                       for item in getattr(page, key))
            cursor = page.next_cursor
            if cursor is None:
                break
        return out

    # -- calls -----------------------------------------------------------------------------

    def available(self) -> Client:
        client = self._client
        if client is None or self.state != "up":
            wait = f" Retrying in {max(0.0, self.retry_at - time.time()):.1f}s." \
                if self.retry_at else ""
            raise UpstreamUnavailableError(
                f"The tool server '{self.name}' is not reachable right now.{wait}",
                code="tool_server_unavailable")
        return client

    async def call_tool(self, name: str, arguments: dict[str, Any],
                        progress: Progress | None = None) -> dict[str, Any]:
        """The server's ``CallToolResult`` as JSON."""
        client = self.available()
        result = await self._request(lambda: client.call_tool(
            name, arguments, progress_callback=progress))
        return dict(result.model_dump(mode="json", by_alias=True, exclude_none=True))

    async def read_resource(self, uri: str) -> dict[str, Any]:
        client = self.available()
        result = await self._request(lambda: client.read_resource(uri))
        return dict(result.model_dump(mode="json", by_alias=True, exclude_none=True))

    async def get_prompt(self, name: str, arguments: dict[str, str] | None) -> dict[str, Any]:
        client = self.available()
        result = await self._request(lambda: client.get_prompt(name, arguments))
        return dict(result.model_dump(mode="json", by_alias=True, exclude_none=True))

    async def _request(self, send: Callable[[], Awaitable[Any]]) -> Any:
        try:
            return await asyncio.wait_for(send(), self.config.timeout)
        except MCPError as exc:
            if exc.code != CONNECTION_CLOSED:
                raise ToolServerError(f"The tool server '{self.name}' answered: {exc.message}",
                                      rpc_code=exc.code) from None
            self._lost(exc)
        except TimeoutError:
            raise UpstreamTimeoutError(
                f"The tool server '{self.name}' did not answer within "
                f"{self.config.timeout:g}s.") from None
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._lost(exc)
        raise UpstreamUnavailableError(f"The tool server '{self.name}' failed during the call.",
                                       code="tool_server_unavailable")

    def _lost(self, exc: BaseException) -> None:
        """The connection is gone (a child that exited, an endpoint that went away): the owner
        task reconnects. The call is not retried: a tool call may have had effects."""
        self.last_error = _describe(exc)
        self._broken.set()
        self.state = "down"

    def status(self) -> dict[str, Any]:
        return {"name": self.name, "transport": self.config.transport, "state": self.state,
                "tools": len(self.tools), "resources": len(self.resources),
                "prompts": len(self.prompts), "reconnects": self.reconnects,
                "last_error": self.last_error}


def _describe(exc: BaseException) -> str:
    """One line on why a connection failed (the innermost cause of an exception group)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc).splitlines()[0][:200] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
