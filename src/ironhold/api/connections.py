"""The listening socket's defences against slow and numerous clients.

- **Slow headers (slowloris)**: aiohttp closes a connection that waits for a request longer
  than its keep-alive timeout, counted from the connection (or the previous answer), whether
  or not header bytes are trickling in. Ironhold sets it to ``server.header_timeout``, so one
  setting bounds both an idle keep-alive connection and a request's headers.
- **Slow bodies**: ``api.requests.read_json_body`` reads a body within ``server.body_timeout``.
- **Too many connections**: past ``server.max_connections`` open connections a new one is
  closed as soon as it is accepted, before any of its bytes are read, so a flood of idle
  sockets cannot take every file descriptor and the memory of every buffer.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

__all__ = ["CappedTCPSite"]

log = logging.getLogger("ironhold.api")


class _Refused(asyncio.Protocol):
    """A connection over the cap: closed at once (a reset, so no socket lingers)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.abort()


class CappedTCPSite(web.TCPSite):
    """A TCP site that accepts at most ``max_connections`` open connections."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, *, max_connections: int,
                 backlog: int = 2048, reuse_port: bool = False):
        super().__init__(runner, host, port, backlog=backlog, reuse_address=True,
                         reuse_port=reuse_port)
        self._max_connections = max_connections
        self.refused = 0

    async def start(self) -> None:
        # TCPSite.start with the protocol factory wrapped; BaseSite.start registers the site.
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        cap = self._max_connections

        def protocol() -> asyncio.Protocol:
            if len(server.connections) >= cap:
                self.refused += 1
                if self.refused == 1 or self.refused % 1000 == 0:
                    log.warning("connection_cap_reached", extra={"max_connections": cap,
                                                                  "refused": self.refused})
                return _Refused()
            return server()

        self._server = await asyncio.get_running_loop().create_server(
            protocol, self._host, self._port, backlog=self._backlog,
            reuse_address=self._reuse_address, reuse_port=self._reuse_port)
        sockets = self._server.sockets
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port
