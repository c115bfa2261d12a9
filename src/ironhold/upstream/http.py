"""The OpenAI-compatible HTTP transport: HTTP/1.1 over a pool of keep-alive connections, on
asyncio streams, written for this one job.

Why not a general client: measured on one core (``docs/benchmarks.md``), aiohttp's
``ClientSession`` cost about 170 µs of CPU a request against about 40 µs for a request written
and read directly on a kept connection, a quarter of the whole gateway's CPU per request. A model
server needs little of what a general client does: no redirects, cookies, proxies, compression
or HTTP/2; one request at a time on a connection; answers framed by ``Content-Length``, chunked,
or (HTTP/1.0 style) by the server closing.

What it keeps: ``https`` (the system's trust store), a cap on connections per deployment, a
connection goes back to the pool only when its answer was read to the end and the server
keeps it open (an idle one the server closed, or one idle longer than ``MAX_IDLE``, is
dropped, never reused), the deadlines (``connect`` for the TCP and TLS handshake, ``total``
for the whole exchange including waiting for a free connection, and for a stream
``first_token`` as the longest silence between reads),
and bounds on what a broken server can send (a 64 KiB head, a 512 MiB body).

Errors follow the seam (``upstream/transport.py``); messages name the kind of failure and the
OS's reason, never the deployment's address.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import time
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from ironhold.core.errors import (
    BadGatewayError,
    ConfigError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from ironhold.core.ids import is_uuid
from ironhold.upstream.transport import Deadlines, UpstreamRequest

__all__ = ["HttpResponse", "HttpTransport"]

#: The status line and headers of an answer, at most.
MAX_HEAD = 64 * 1024
#: A whole answer's body, at most (a stream is relayed, not held, and has no cap).
MAX_BODY = 512 * 1024 * 1024
#: Read at most this much at a time from a stream.
_READ = 64 * 1024
#: Seconds a pooled connection may sit idle and still be used. Servers close idle keep-alive
#: connections on their own timer (uvicorn, so vLLM and the mcp SDK's servers, and llama.cpp's
#: server: 5 s); a request sent just as the server closes is reset, and a tool call cannot be
#: retried. Staying well inside that timer avoids the race; after 3 s idle a new connection's
#: handshake is cheap by comparison.
MAX_IDLE = 3.0


class _Broken(Exception):
    """The server broke HTTP/1.1 (a bad status line, framing, or sizes); the message says how."""


class _Connection:
    __slots__ = ("idle_since", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer
        #: When it went back to the pool (``time.monotonic``).
        self.idle_since = 0.0

    def usable(self) -> bool:
        """Still open both ways: an idle connection the server closed is not reused."""
        return not self.reader.at_eof() and not self.writer.is_closing()

    def close(self) -> None:
        self.writer.close()


class HttpResponse:
    """One answer; its connection is released by ``read``, by the end of ``chunks``, or by
    ``close`` (which closes it if the body was not read to the end)."""

    __slots__ = ("_conn", "_deadline", "_done", "_keep", "_length", "_mode", "_pause",
                 "_read_ahead", "_transport", "headers", "status")

    def __init__(self, transport: HttpTransport, conn: _Connection, head: _Head,
                 deadline: float, pause: float | None, body: bytes | None = None):
        self._transport = transport
        #: The body, when it was read with the head (a whole answer with a Content-Length).
        self._read_ahead = body
        self._conn: _Connection | None = conn
        self.status = head.status
        #: Header names in lower case.
        self.headers: Mapping[str, str] = head.headers
        #: "length" (``Content-Length``), "chunked", "close" (until the server closes), "none".
        self._mode = head.mode
        self._length = head.length
        #: The server keeps the connection open after this answer.
        self._keep = head.keep
        self._deadline = deadline
        #: The longest silence allowed between reads (streams), or None.
        self._pause = pause
        self._done = head.mode == "none" or body is not None

    def _limit(self) -> float:
        loop_now = asyncio.get_running_loop().time()
        return self._deadline if self._pause is None else min(self._deadline,
                                                               loop_now + self._pause)

    async def read(self) -> bytes:
        if self._read_ahead is not None:
            self.close()
            return self._read_ahead
        try:
            # (A whole answer with a Content-Length was read with its head: above.)
            parts = [part async for part in self._body(whole=True)]
        except TimeoutError as exc:
            raise UpstreamTimeoutError(f"the {self._transport.peer} did not finish in time") \
                from exc
        except (_Broken, OSError, asyncio.IncompleteReadError) as exc:
            raise BadGatewayError(f"the {self._transport.peer} broke off its response: "
                                 f"{_why(exc)}") from exc
        finally:
            self.close()
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        if self._read_ahead is not None:
            self.close()
            if self._read_ahead:
                yield self._read_ahead
            return
        try:
            async for part in self._body(whole=False):
                yield part
        except TimeoutError as exc:
            raise UpstreamTimeoutError(f"the {self._transport.peer} stalled mid-stream") from exc
        except (_Broken, OSError, asyncio.IncompleteReadError) as exc:
            raise BadGatewayError(f"the {self._transport.peer} broke off the stream: "
                                 f"{_why(exc)}") from exc
        finally:
            self.close()

    async def _body(self, whole: bool) -> AsyncGenerator[bytes, None]:
        conn = self._conn
        if conn is None or self._done:
            return
        reader = conn.reader
        if self._mode == "length":  # a stream's (a whole answer's is read by ``read``)
            left = self._length
            while left:
                async with asyncio.timeout_at(self._limit()):
                    data = await reader.read(min(left, _READ))
                if not data:
                    raise asyncio.IncompleteReadError(b"", left)
                left -= len(data)
                self._done = left == 0
                yield data
        elif self._mode == "chunked":
            total = 0
            while True:
                async with asyncio.timeout_at(self._limit()):
                    line = await reader.readuntil(b"\r\n")
                size = _chunk_size(line)
                if size == 0:
                    async with asyncio.timeout_at(self._limit()):
                        while await reader.readuntil(b"\r\n") != b"\r\n":
                            pass  # trailers: none expected, none kept
                    self._done = True
                    return
                total += size
                if whole and total > MAX_BODY:
                    raise _Broken(f"a body over {MAX_BODY} bytes")
                left = size
                while left:
                    async with asyncio.timeout_at(self._limit()):
                        data = (await reader.readexactly(left) if whole
                                else await reader.read(min(left, _READ)))
                    if not data:
                        raise asyncio.IncompleteReadError(b"", left)
                    left -= len(data)
                    yield data
                async with asyncio.timeout_at(self._limit()):
                    if await reader.readexactly(2) != b"\r\n":
                        raise _Broken("a chunk not followed by CRLF")
        else:  # "close": the body ends when the server closes the connection
            total = 0
            while True:
                async with asyncio.timeout_at(self._limit()):
                    data = await reader.read(_READ)
                if not data:
                    self._done = True
                    return
                total += len(data)
                if whole and total > MAX_BODY:
                    raise _Broken(f"a body over {MAX_BODY} bytes")
                yield data

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            # A connection goes back only when its answer was read to the end: a half-read
            # body must not be taken for the next answer's start.
            self._transport._release(conn, reuse=self._done and self._keep)


class HttpTransport:
    """Sends requests to one deployment's base URL over a pool of keep-alive connections."""

    def __init__(self, base_url: str, api_key: str | None = None, max_connections: int = 256,
                 uuid_request_ids_only: bool = False, max_idle: float = MAX_IDLE,
                 peer: str = "model server"):
        #: What errors call the other end ("model server", "tool server").
        self.peer = peer
        self._max_idle = max_idle
        self._base_url = base_url.rstrip("/")
        parts = urlsplit(self._base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"a deployment url must be http:// or https://, not {base_url!r}")
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl: ssl.SSLContext | None = (ssl.create_default_context()
                                            if parts.scheme == "https" else None)
        self._prefix = parts.path
        default_port = self._port == (443 if self._ssl else 80)
        host = f"[{self._host}]" if ":" in self._host else self._host
        authority = host if default_port else f"{host}:{self._port}"
        fixed = [("Host", authority), ("Content-Type", "application/json")]
        if api_key:
            if any(c in api_key for c in "\r\n\0"):
                raise ConfigError("a deployment's api_key cannot hold line breaks")
            fixed.append(("Authorization", f"Bearer {api_key}"))
        self._fixed = "".join(f"{k}: {v}\r\n" for k, v in fixed)
        self._check_headers = "".join(f"{k}: {v}\r\n" for k, v in fixed
                                      if k != "Content-Type")
        # llama-cpp-python's server answers 400 to an X-Request-ID that is not a UUID.
        self._uuid_ids_only = uuid_request_ids_only
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(max_connections)
        self._closed = False

    @property
    def base_url(self) -> str:
        return self._base_url

    @property
    def closed(self) -> bool:
        """Closed (its deployment was removed by a reload, or the gateway stopped)."""
        return self._closed

    async def send(self, request: UpstreamRequest) -> HttpResponse:
        head = self._head("POST", request.path, request.headers, len(request.body))
        return await self._translated(head + request.body, request.deadlines, request.stream)

    async def delete(self, path: str, headers: Mapping[str, str],
                     deadlines: Deadlines) -> HttpResponse:
        """``DELETE`` (an MCP session's end)."""
        return await self._translated(self._head("DELETE", path, headers, 0), deadlines, False)

    async def _translated(self, data: bytes, deadlines: Deadlines,
                          stream: bool) -> HttpResponse:
        try:
            return await self._exchange(data, deadlines, stream)
        except TimeoutError as exc:
            raise UpstreamTimeoutError(f"the {self.peer} did not answer in time") from exc
        except _Broken as exc:
            raise BadGatewayError(f"the {self.peer} failed: {exc}") from exc
        except (OSError, asyncio.IncompleteReadError) as exc:
            raise UpstreamUnavailableError(f"cannot reach the {self.peer}: {_why(exc)}") \
                from exc

    async def check(self, path: str, within: float) -> bool:
        head = (f"GET {self._prefix}{path} HTTP/1.1\r\n{self._check_headers}"
                "Content-Length: 0\r\n\r\n").encode("latin-1")
        try:
            response = await self._exchange(head, Deadlines(within, within, within), False)
            await response.read()
        except (TimeoutError, _Broken, OSError, asyncio.IncompleteReadError,
                UpstreamTimeoutError, BadGatewayError):
            return False
        return 200 <= response.status < 300

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
        for conn in idle:
            with contextlib.suppress(Exception):
                await conn.writer.wait_closed()

    # -- one exchange ----------------------------------------------------------------------

    def _head(self, method: str, path: str, headers: Mapping[str, str], length: int) -> bytes:
        lines = [f"{method} {self._prefix}{path} HTTP/1.1\r\n{self._fixed}"
                 f"Content-Length: {length}\r\n"]
        for name, value in headers.items():
            if name.lower() == "x-request-id" and self._uuid_ids_only and not is_uuid(value):
                continue
            if any(c in name or c in value for c in "\r\n\0"):
                continue  # never a header that could split the request
            lines.append(f"{name}: {value}\r\n")
        lines.append("\r\n")
        return "".join(lines).encode("latin-1", "replace")

    async def _exchange(self, data: bytes, deadlines: Deadlines, stream: bool) -> HttpResponse:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + deadlines.total
        if self._slots.locked():  # every connection is busy: wait, within the deadline
            async with asyncio.timeout_at(deadline):
                await self._slots.acquire()
        else:
            await self._slots.acquire()
        conn: _Connection | None = None
        try:
            conn = await self._connection(deadline, deadlines.connect)
            conn.writer.write(data)
            if conn.writer.transport.get_write_buffer_size() > _READ:
                async with asyncio.timeout_at(deadline):
                    await conn.writer.drain()
            pause = deadlines.first_token if stream else None
            limit = deadline if pause is None else min(deadline, loop.time() + pause)
            body = None
            async with asyncio.timeout_at(limit):
                head = await _read_head(conn.reader)
                if not stream and head.mode == "length":
                    # A whole answer's body under the same deadline: one timer, not two.
                    try:
                        body = await conn.reader.readexactly(head.length)
                    except (OSError, asyncio.IncompleteReadError) as exc:
                        raise _Broken(f"it broke off its response: {_why(exc)}") from exc
        except BaseException:
            if conn is not None:
                conn.close()
            self._slots.release()
            raise
        return HttpResponse(self, conn, head, deadline, pause, body)

    async def _connection(self, deadline: float, connect: float) -> _Connection:
        while self._idle:
            conn = self._idle.pop()
            if time.monotonic() - conn.idle_since > self._max_idle:
                # The pool is newest last: every one below has idled longer still.
                conn.close()
                self._drop_idle()
                break
            if conn.usable():
                return conn
            conn.close()
        loop = asyncio.get_running_loop()
        async with asyncio.timeout_at(min(deadline, loop.time() + connect)):
            reader, writer = await asyncio.open_connection(
                self._host, self._port, ssl=self._ssl, limit=MAX_HEAD,
                server_hostname=self._host if self._ssl else None)
        return _Connection(reader, writer)

    def _drop_idle(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def _release(self, conn: _Connection, reuse: bool) -> None:
        if reuse and not self._closed and conn.usable():
            conn.idle_since = time.monotonic()
            self._idle.append(conn)
        else:
            conn.close()
        self._slots.release()


@dataclass(frozen=True, slots=True)
class _Head:
    status: int
    #: Names in lower case; a repeated header's values joined with ", ".
    headers: dict[str, str]
    #: How the body is framed: "length", "chunked", "close" (until EOF) or "none".
    mode: str
    length: int
    #: The server keeps the connection open afterwards (HTTP/1.1 without "Connection: close").
    keep: bool


async def _read_head(reader: asyncio.StreamReader) -> _Head:
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.LimitOverrunError as exc:
        raise _Broken(f"a response head over {MAX_HEAD} bytes") from exc
    lines = raw.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code = rest[:3]
    if version not in ("HTTP/1.1", "HTTP/1.0") or not code.isdigit() \
            or rest[3:4] not in ("", " "):
        raise _Broken("not an HTTP/1.1 status line")
    status = int(code)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise _Broken("a malformed header line")
        name = name.lower()
        value = value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    if status < 200:
        raise _Broken(f"an unexpected informational status {status}")
    keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
    if status in (204, 304):
        return _Head(status, headers, "none", 0, keep)
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return _Head(status, headers, "chunked", 0, keep)
    length = headers.get("content-length")
    if length is None:
        return _Head(status, headers, "close", 0, False)
    if not length.isdigit() or int(length) > MAX_BODY:
        raise _Broken(f"a bad Content-Length {length[:20]!r}")
    return _Head(status, headers, "length" if int(length) else "none", int(length), keep)


def _chunk_size(line: bytes) -> int:
    digits = line.split(b";", 1)[0].strip()
    try:
        size = int(digits, 16)
    except ValueError:
        raise _Broken("a bad chunk size") from None
    if size < 0 or len(digits) > 16:
        raise _Broken("a bad chunk size")
    return size


def _why(exc: BaseException) -> str:
    """What went wrong, for the client's error message: the kind of failure and the OS's reason
    (``Connection refused``), never the deployment's address, port or URL (internal topology),
    nor the request (it may carry a key). The router's log line names the deployment."""
    if isinstance(exc, asyncio.IncompleteReadError):
        return "ServerDisconnectedError"
    if isinstance(exc, _Broken):
        return str(exc)
    code = exc.errno if isinstance(exc, OSError) else None
    # Not ``strerror``: asyncio writes the address into it ("Connect call failed (...)").
    return f"{type(exc).__name__}: {os.strerror(code)}" if code else type(exc).__name__
