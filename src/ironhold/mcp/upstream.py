"""One upstream MCP server, kept connected: a supervised stdio child process or a remote
Streamable HTTP endpoint (``mcp.connection``).

A connection is owned by one task (the SDK's stdio client lives in anyio task groups, which
must be entered and left by the same task). That task connects, reads the server's tools, resources
and prompts, then pings it and reads its listings again from time to time. When the server
dies (a child process that exits, an endpoint that stops answering), calls to it fail fast
with 503 and the task connects again with a growing back-off: a stdio server is restarted,
an HTTP one is ejected and retried, as model deployments are.

The connection's errors become domain errors here: a JSON-RPC error from the server
``ToolServerError`` (passed on with its code), a lost connection ``UpstreamUnavailableError``,
a call past its deadline ``UpstreamTimeoutError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, Literal, TextIO

from ironhold.config.mcp import McpServerConfig
from ironhold.core.errors import (
    ToolServerError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from ironhold.mcp.connection import (
    Connection,
    ConnectionLost,
    Progress,
    RpcError,
    open_connection,
)

__all__ = ["Listing", "Progress", "ToolServer"]

log = logging.getLogger("ironhold.mcp")

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
        self._conn: Connection | None = None
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
                with self._errlog() as errlog:
                    async with open_connection(self.config, self._base_dir, errlog) as conn:
                        if not first:
                            self.reconnects += 1
                        first = False
                        await self._list(conn)
                        self._conn, self.state, self.last_error = conn, "up", None
                        self.retry_at = None
                        self._broken.clear()
                        self._up.set()
                        delay = _BACKOFF[0]
                        await self._watch(conn)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # an ExceptionGroup from the SDK's task groups too
                if isinstance(exc, KeyboardInterrupt | SystemExit):
                    raise
                self.last_error = _describe(exc)
                log.warning("mcp_server_down", extra={"server": self.name,
                                                      "error": self.last_error})
            finally:
                self._conn = None
                self._up.clear()
                if self.state != "stopped":
                    self.state = "down"
            self.retry_at = time.time() + delay
            await asyncio.sleep(delay)
            delay = min(delay * 2, _BACKOFF[1])

    async def _watch(self, conn: Connection) -> None:
        """Until the connection breaks: ping it, and read the listings again when due."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._broken.wait(), min(_PING_EVERY, self._refresh))
            if self._broken.is_set():
                raise ConnectionLost(self.last_error or "the connection broke")
            # Any answer proves the connection (2026 servers no longer know ``ping``).
            with contextlib.suppress(RpcError):
                await asyncio.wait_for(conn.request("ping", {}), self.config.timeout)
            if time.monotonic() - self.listed_at >= self._refresh:
                await self._list(conn)

    @contextlib.contextmanager
    def _errlog(self) -> Iterator[TextIO]:
        """Where a stdio server's stderr goes: its own log file beside the gateway's, or
        nowhere (an HTTP server's, or when there is no log folder)."""
        path = Path(os.devnull)
        if self._log_dir is not None and self.config.command is not None:
            self._log_dir.mkdir(parents=True, exist_ok=True)
            path = self._log_dir / f"mcp-{self.name}.log"
        stream: TextIO = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed below
        try:
            yield stream
        finally:
            stream.close()

    async def _list(self, conn: Connection) -> None:
        caps = conn.capabilities
        self.tools = await self._pages(conn, "tools/list", "tools")
        self.resources = (await self._pages(conn, "resources/list", "resources")
                          if "resources" in caps else [])
        self.prompts = (await self._pages(conn, "prompts/list", "prompts")
                        if "prompts" in caps else [])
        self.listed_at = time.monotonic()
        if self.on_listing is not None:
            await self.on_listing(self)

    async def _pages(self, conn: Connection, method: str, key: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        cursor: str | None = None
        for _ in range(_MAX_PAGES):
            try:
                page = await asyncio.wait_for(
                    conn.request(method, {"cursor": cursor} if cursor else {}),
                    self.config.timeout)
            except RpcError as exc:
                if exc.code == _METHOD_NOT_FOUND:
                    return out
                raise
            items = page.get(key)
            out.extend(i for i in (items if isinstance(items, list) else ())
                       if isinstance(i, dict))
            cursor = page.get("nextCursor")
            if not isinstance(cursor, str) or not cursor:
                break
        return out

    # -- calls -----------------------------------------------------------------------------

    def available(self) -> Connection:
        conn = self._conn
        if conn is None or self.state != "up":
            wait = f" Retrying in {max(0.0, self.retry_at - time.time()):.1f}s." \
                if self.retry_at else ""
            raise UpstreamUnavailableError(
                f"The tool server '{self.name}' is not reachable right now.{wait}",
                code="tool_server_unavailable")
        return conn

    async def call_tool(self, name: str, arguments: dict[str, Any],
                        progress: Progress | None = None) -> dict[str, Any]:
        """The server's ``CallToolResult`` as JSON."""
        return await self._request("tools/call", {"name": name, "arguments": arguments},
                                   progress)

    async def read_resource(self, uri: str) -> dict[str, Any]:
        return await self._request("resources/read", {"uri": uri})

    async def get_prompt(self, name: str, arguments: dict[str, str] | None) -> dict[str, Any]:
        return await self._request("prompts/get", {"name": name, "arguments": arguments})

    async def _request(self, method: str, params: dict[str, Any],
                       progress: Progress | None = None) -> dict[str, Any]:
        conn = self.available()
        try:
            async with asyncio.timeout(self.config.timeout):
                return await conn.request(method, params, progress)
        except RpcError as exc:
            raise ToolServerError(f"The tool server '{self.name}' answered: {exc.message}",
                                  rpc_code=exc.code) from None
        except TimeoutError:
            raise UpstreamTimeoutError(
                f"The tool server '{self.name}' did not answer within "
                f"{self.config.timeout:g}s.") from None
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # ConnectionLost, or the SDK's transport failing
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
