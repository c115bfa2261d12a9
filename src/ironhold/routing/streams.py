"""Streams after the commit point: the model server's bytes decoded once into typed events and
relayed as they arrive, never buffered whole; a failure ends the stream with one error event
instead of raising."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncGenerator

from ironhold.core.codec import SseDecoder
from ironhold.core.errors import BadGatewayError, IronholdError, UpstreamTimeoutError
from ironhold.core.events import Chunk, Done, Event, StreamError
from ironhold.core.usage import StreamUsage
from ironhold.routing.attempt import Attempt
from ironhold.upstream.transport import UpstreamResponse

__all__ = ["Relay", "first_chunk"]

#: After ``[DONE]``, the rest of the body (the end of its chunked encoding) is read so the
#: connection can go back to the pool, for at most this long.
_DRAIN_SECONDS = 1.0


async def first_chunk(chunks: AsyncGenerator[bytes, None], deadline: float) -> bytes:
    try:
        async with asyncio.timeout(deadline):
            first = await anext(chunks, b"")
    except TimeoutError as exc:
        raise UpstreamTimeoutError("no first token from the model server in time") from exc
    if not first:
        raise BadGatewayError("the model server closed the stream before the first token")
    return first


class Relay:
    """A committed stream's events, starting with the first chunk's (already read: it is what
    committed the attempt). The usage chunk is taken out when the client did not ask for it
    (``StreamUsage``), and the request's usage is settled before ``[DONE]`` goes on. A failure
    ends the stream with a ``StreamError`` (and counts against the deployment). ``aclose``
    releases the attempt and the upstream connection exactly once."""

    __slots__ = ("_attempt", "_chunks", "_closed", "_decoder", "_done", "_pending",
                 "_response", "_started", "_stopped", "_usage")

    def __init__(self, first: bytes, chunks: AsyncGenerator[bytes, None],
                 response: UpstreamResponse, attempt: Attempt, usage: StreamUsage):
        self._chunks = chunks
        self._response = response
        self._attempt = attempt
        self._usage = usage
        self._decoder = SseDecoder()
        self._pending: deque[Event] = deque()
        self._started = False
        self._done = False  # [DONE] went on; only the end of the body is left to read
        self._stopped = False  # nothing more will be read
        self._closed = False
        self._take(first)

    def __aiter__(self) -> Relay:
        return self

    async def __anext__(self) -> Event:
        self._started = True
        while True:
            while self._pending:
                event = self._pending.popleft()
                if isinstance(event, Chunk):
                    if self._usage.keep(event):
                        return event
                    continue
                if isinstance(event, Done):
                    self._usage.finish()
                    self._done = True
                    self._pending.clear()
                elif isinstance(event, StreamError):
                    # The model server's own error event: the stream is over.
                    self._stopped = True
                    self._pending.clear()
                return event
            if self._stopped:
                raise StopAsyncIteration
            if self._done:
                await self._drain()
                raise StopAsyncIteration
            try:
                chunk = await anext(self._chunks)
            except StopAsyncIteration:
                self._stopped = True
                self._pending.extend(self._decoder.finish())
                continue
            except IronholdError as exc:
                return self._broke(exc)
            self._take(chunk)

    def ready(self) -> bool:
        return bool(self._pending)

    def _take(self, chunk: bytes) -> None:
        try:
            self._pending.extend(self._decoder.feed(chunk))
        except BadGatewayError as exc:
            self._pending.append(self._broke(exc))

    def _broke(self, exc: IronholdError) -> StreamError:
        self._attempt.broke(exc)
        self._stopped = True
        return StreamError(exc)

    async def _drain(self) -> None:
        self._stopped = True
        with contextlib.suppress(TimeoutError, IronholdError):
            async with asyncio.timeout(_DRAIN_SECONDS):
                async for _ in self._chunks:
                    pass

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._started:  # a lost hedge that never went out is not this request's usage
            self._usage.finish()
        if self._done and not self._stopped:
            # [DONE] went on and the edge stopped there: read the end of the body, so the
            # connection goes back to the pool instead of being closed.
            await self._drain()
        self._attempt.release()
        self._response.close()
        with contextlib.suppress(Exception):
            await self._chunks.aclose()
