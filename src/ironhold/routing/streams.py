"""Streams after the commit point: the upstream's chunks relayed one by one, never buffered
whole; a failure ends the stream with an error event instead of raising."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Callable

from ironhold.core.errors import (
    BadGatewayError,
    IronholdError,
    UpstreamTimeoutError,
    stream_error_event,
)
from ironhold.core.exchange import ChunkStream
from ironhold.core.usage import StreamUsage
from ironhold.routing.deployment import Deployment
from ironhold.routing.group import ModelGroup
from ironhold.upstream.transport import UpstreamResponse

log = logging.getLogger("ironhold.routing")


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
    """The stream after the commit point, starting with the first chunk (already read, which is
    what committed it), event by event, never buffered whole. A failure now ends the stream with
    an error event in the OpenAI shape (and counts against the deployment) instead of raising;
    ``aclose`` releases the deployment and the upstream connection exactly once, and settles
    what the stream used (``StreamUsage``) if any of it went out."""

    __slots__ = ("_at_boundary", "_chunks", "_closed", "_deployment", "_first", "_group",
                 "_response", "_shared", "_started", "_usage")

    def __init__(self, first: bytes, chunks: AsyncGenerator[bytes, None],
                 response: UpstreamResponse, deployment: Deployment, group: ModelGroup,
                 usage: StreamUsage, shared: bool = True):
        self._first: bytes | None = first
        self._chunks = chunks
        self._response = response
        self._deployment = deployment
        self._group = group
        self._usage = usage
        #: False for a request carrying its own faults: its breaks eject nothing.
        self._shared = shared
        self._at_boundary = True
        self._closed = False
        self._started = False

    def __aiter__(self) -> Relay:
        return self

    async def __anext__(self) -> bytes:
        self._started = True
        while True:
            if self._first is not None:
                chunk, self._first = self._first, None
            elif self._closed:
                raise StopAsyncIteration
            else:
                try:
                    chunk = await anext(self._chunks)
                except IronholdError as exc:
                    return await self._broke(exc)
                except StopAsyncIteration:
                    rest = self._usage.flush()
                    await self.aclose()
                    if rest:
                        return rest
                    raise
            out = self._usage.feed(chunk)
            if out:
                self._at_boundary = out.endswith(b"\n\n")
                return out

    async def _broke(self, exc: IronholdError) -> bytes:
        group, deployment = self._group, self._deployment
        if self._shared:
            group.outlier.failure(deployment, exc.code)
        group.metrics.upstream_attempt(group.name, deployment.name, f"stream_{exc.code}")
        log.warning("stream broke after the commit point", extra={
            "model": group.name, "deployment": deployment.name,
            "error": exc.code, "detail": exc.message})
        rest = self._usage.flush()
        await self.aclose()
        lead = b"" if self._at_boundary and not rest else b"\n\n"
        return rest + lead + stream_error_event(exc, "upstream_error")

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._started:  # a lost hedge that never went out is not this request's usage
            self._usage.finish()
        self._group.released(self._deployment)
        self._response.close()
        with contextlib.suppress(Exception):
            await self._chunks.aclose()


class Released:
    """Runs ``release`` (the per-key bulkhead slot) once when the stream is closed."""

    __slots__ = ("_release", "_stream")

    def __init__(self, stream: ChunkStream, release: Callable[[], None]):
        self._stream = stream
        self._release = release

    def __aiter__(self) -> Released:
        return self

    async def __anext__(self) -> bytes:
        return await anext(self._stream)

    async def aclose(self) -> None:
        self._release()
        await self._stream.aclose()
