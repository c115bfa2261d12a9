"""The HTTP/1.1 transport against real loopback servers that write exact bytes: every framing a
model server uses, keep-alive and its limits, deadlines, and what a broken server gets back."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from ironhold.core.errors import BadGatewayError, UpstreamTimeoutError, UpstreamUnavailableError
from ironhold.upstream.http import MAX_HEAD, HttpTransport
from ironhold.upstream.transport import Deadlines, UpstreamRequest

BODY = b'{"id":"x","choices":[]}'
ROOMY = Deadlines(connect=2, first_token=2, total=5)

#: Serves one connection; the third argument is the server's record.
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "Server"], Awaitable[None]]


@dataclass
class Server:
    url: str
    connections: int = 0
    open_now: int = 0
    most_open: int = 0
    requests: list[bytes] = field(default_factory=list)


async def read_request(reader: asyncio.StreamReader, server: Server) -> bytes | None:
    """Reads one request (head and Content-Length body); None when the client closed."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    request = head + await reader.readexactly(length)
    server.requests.append(request)
    return request


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[Server]]]:
    servers: list[asyncio.Server] = []

    async def start(handler: Handler) -> Server:
        state = Server(url="")

        async def on_connection(reader: asyncio.StreamReader,
                                writer: asyncio.StreamWriter) -> None:
            state.connections += 1
            state.open_now += 1
            state.most_open = max(state.most_open, state.open_now)
            try:
                await handler(reader, writer, state)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                state.open_now -= 1
                writer.close()

        server = await asyncio.start_server(on_connection, "127.0.0.1", 0)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        state.url = f"http://127.0.0.1:{port}/v1"
        return state

    yield start
    for server in servers:
        server.close()


def keep_alive(answer: bytes, times: int = 100) -> Handler:
    """Answers each request on the connection with ``answer``."""
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      server: Server) -> None:
        for _ in range(times):
            if await read_request(reader, server) is None:
                return
            writer.write(answer)
            await writer.drain()
    return handler


def in_turn(answers: list[bytes]) -> Handler:
    """Answers the requests, on whatever connection they come, with ``answers`` in turn."""
    queue = iter(answers)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      server: Server) -> None:
        while await read_request(reader, server) is not None:
            writer.write(next(queue))
            await writer.drain()
    return handler


def ok(body: bytes = BODY, extra: bytes = b"") -> bytes:
    return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n" + extra + b"\r\n" + body)


def request(stream: bool = False, deadlines: Deadlines = ROOMY,
            headers: dict[str, str] | None = None) -> UpstreamRequest:
    return UpstreamRequest("/chat/completions", b'{"model":"m"}', stream, deadlines,
                           headers or {"X-Request-Id": "r-1"})


async def test_answers_are_read_whole_and_the_connection_is_kept(
        serve: Callable[[Handler], Awaitable[Server]]) -> None:
    server = await serve(keep_alive(ok()))
    transport = HttpTransport(server.url, api_key="sk-upstream")
    for _ in range(3):
        response = await transport.send(request())
        assert response.status == 200 and response.headers["content-type"] == \
            "application/json"
        assert await response.read() == BODY
    assert server.connections == 1
    first = server.requests[0]
    assert first.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
    assert b"\r\nAuthorization: Bearer sk-upstream\r\n" in first
    assert b"\r\nX-Request-Id: r-1\r\n" in first and first.endswith(b'{"model":"m"}')
    await transport.close()


async def test_a_chunked_stream_is_relayed_as_it_comes(
        serve: Callable[[Handler], Awaitable[Server]]) -> None:
    second = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      server: Server) -> None:
        while await read_request(reader, server) is not None:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n")
            writer.write(b"6\r\ndata: ")      # a chunk split over two writes
            await writer.drain()
            await asyncio.sleep(0.01)
            writer.write(b"\r\n3;ext=1\r\none\r\n")
            await writer.drain()
            await second.wait()
            writer.write(b"3\r\ntwo\r\n0\r\n\r\n")
            await writer.drain()

    server = await serve(handler)
    transport = HttpTransport(server.url)
    for _ in range(2):
        second.clear()
        response = await transport.send(request(stream=True))
        got = b""
        async for chunk in response.chunks():
            got += chunk
            if got == b"data: one":  # arrived before the server wrote the rest
                second.set()
        assert got == b"data: onetwo"
    assert server.connections == 1  # read to the end: the connection went back
    await transport.close()


async def test_bodies_framed_by_close_and_connection_close_are_not_reused(
        serve: Callable[[Handler], Awaitable[Server]]) -> None:
    answers = [b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + BODY,
               ok(extra=b"Connection: close\r\n")]

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      server: Server) -> None:
        if await read_request(reader, server) is not None:
            writer.write(answers[server.connections % 2])
            await writer.drain()
            await asyncio.sleep(0.05)

    server = await serve(handler)
    transport = HttpTransport(server.url)
    for _ in range(4):
        assert await (await transport.send(request())).read() == BODY
    assert server.connections == 4
    await transport.close()


async def test_an_idle_connection_the_server_closed_is_not_reused(
        serve: Callable[[Handler], Awaitable[Server]]) -> None:
    server = await serve(keep_alive(ok(), times=1))  # closes after one answer
    transport = HttpTransport(server.url)
    for _ in range(3):
        assert await (await transport.send(request())).read() == BODY
        # Wait (however long a loaded machine takes) until the server's FIN has reached the
        # pooled connection while it sits idle.
        for _ in range(2000):  # 10 s at most
            if not server.open_now and not any(c.usable() for c in transport._idle):
                break
            await asyncio.sleep(0.005)
    assert server.connections == 3
    await transport.close()


async def test_a_connection_idle_too_long_is_not_reused(
        serve: Callable[[Handler], Awaitable[Server]]) -> None:
    """A server closes idle keep-alive connections on its own timer; a request sent as it does
    is reset. So a connection idle past ``max_idle`` is dropped, not tried."""
    server = await serve(keep_alive(ok(), times=100))  # would keep it open
    transport = HttpTransport(server.url, max_idle=60)
    for _ in range(3):  # back to back: one connection
        assert await (await transport.send(request())).read() == BODY
    assert server.connections == 1
    for conn in transport._idle:  # idle a minute and more, without waiting one
        conn.idle_since -= 61
    assert await (await transport.send(request())).read() == BODY
    assert server.connections == 2
    # The stale one was closed, not kept beside the new one.
    for _ in range(2000):  # 10 s at most, however long a loaded machine takes
        if server.open_now == 1:
            break
        await asyncio.sleep(0.005)
    assert server.open_now == 1 and len(transport._idle) == 1
    await transport.close()


async def test_the_connection_cap_holds(serve: Callable[[Handler], Awaitable[Server]]) -> None:
    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                   server: Server) -> None:
        while await read_request(reader, server) is not None:
            await asyncio.sleep(0.02)
            writer.write(ok())
            await writer.drain()

    server = await serve(slow)
    transport = HttpTransport(server.url, max_connections=2)

    async def one() -> bytes:
        return await (await transport.send(request())).read()

    assert await asyncio.gather(*(one() for _ in range(8))) == [BODY] * 8
    assert server.most_open <= 2 and server.connections <= 2
    await transport.close()


@pytest.mark.parametrize(("answer", "error", "words"), [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part", BadGatewayError, "broke off"),
    (b"SMTP ready\r\n\r\n", BadGatewayError, "status line"),
    (b"HTTP/1.1 200 OK\r\nX-" + b"a" * MAX_HEAD + b": b\r\n\r\n", BadGatewayError, "head over"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: lots\r\n\r\n", BadGatewayError, "Content-Length"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", BadGatewayError,
     "chunk size"),
    (b"", UpstreamUnavailableError, "ServerDisconnectedError"),
])
async def test_a_broken_server_gets_a_clear_error(
        serve: Callable[[Handler], Awaitable[Server]], answer: bytes,
        error: type[Exception], words: str) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      server: Server) -> None:
        if await read_request(reader, server) is not None:
            writer.write(answer)
            await writer.drain()

    server = await serve(handler)
    transport = HttpTransport(server.url)
    with pytest.raises(error) as caught:
        response = await transport.send(request())
        await response.read()
    assert words in str(caught.value) and "127.0.0.1" not in str(caught.value)
    # The transport is still usable: the broken connection was dropped, its slot freed.
    await transport.close()


async def test_deadlines_end_silent_servers(
        serve: Callable[[Handler], Awaitable[Server]]) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     server: Server) -> None:
        await read_request(reader, server)
        await asyncio.sleep(5)

    async def stalls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     server: Server) -> None:
        await read_request(reader, server)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\none\r\n")
        await writer.drain()
        await asyncio.sleep(5)

    quick = Deadlines(connect=1, first_token=0.2, total=0.4)
    transport = HttpTransport((await serve(silent)).url)
    with pytest.raises(UpstreamTimeoutError, match="did not answer in time"):
        await transport.send(request(deadlines=quick))
    transport = HttpTransport((await serve(stalls)).url)
    response = await transport.send(request(stream=True, deadlines=quick))
    seen = []
    with pytest.raises(UpstreamTimeoutError, match="stalled mid-stream"):
        async for chunk in response.chunks():
            seen.append(chunk)
    assert seen == [b"one"]


async def test_an_unreachable_server_is_unavailable_without_its_address() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once the socket is closed
    transport = HttpTransport(f"http://127.0.0.1:{port}/v1")
    with pytest.raises(UpstreamUnavailableError) as caught:
        await transport.send(request())
    assert "Connection refused" in caught.value.message and str(port) not in caught.value.message
    assert not await transport.check("/models", 1.0)


async def test_header_values_cannot_split_the_request(
        serve: Callable[[Handler], Awaitable[Server]]) -> None:
    server = await serve(keep_alive(ok()))
    transport = HttpTransport(server.url)
    await (await transport.send(request(headers={"X-Request-Id": "a\r\nX-Evil: 1",
                                                 "X-Fine": "yes"}))).read()
    assert b"X-Evil" not in server.requests[0] and b"X-Fine: yes" in server.requests[0]
    await transport.close()


async def test_health_checks_want_a_2xx(serve: Callable[[Handler], Awaitable[Server]]) -> None:
    server = await serve(in_turn([ok(b"[]"), b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n"]))
    transport = HttpTransport(server.url)
    assert await transport.check("/models", 1.0)
    assert not await transport.check("/models", 1.0)
    assert server.requests[0].startswith(b"GET /v1/models HTTP/1.1\r\n")
    await transport.close()


async def test_a_chunked_answer_is_read_whole_and_a_length_framed_stream_in_pieces(
        serve: Callable[[Handler], Awaitable[Server]]) -> None:
    server = await serve(in_turn([
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\n" + BODY[:5] + b"\r\n" + f"{len(BODY) - 5:x}".encode() + b"\r\n" + BODY[5:]
        + b"\r\n0\r\nX-Trailer: ignored\r\n\r\n",
        ok(),
        b"HTTP/1.1 204 No Content\r\n\r\n",
    ]))
    transport = HttpTransport(server.url)
    assert await (await transport.send(request())).read() == BODY
    streamed = await transport.send(request(stream=True))
    assert b"".join([chunk async for chunk in streamed.chunks()]) == BODY
    empty = await transport.send(request())
    assert empty.status == 204 and await empty.read() == b""
    assert server.connections == 1  # every answer was read to its end: one connection
    await transport.close()
