"""An in-memory transport, for the router's unit tests and for trying a config without a model
server (the way ``httpx.MockTransport`` stands in for a network).

A handler answers each request: with a ``MockResponse`` (a whole body, or a stream of chunks,
each after its own delay), or by raising one of the transport errors (``UpstreamUnavailableError``,
``UpstreamTimeoutError``, ``BadGatewayError``). Delays are ``asyncio.sleep``, so under a virtual
clock (``looptime``) a test of timeouts, hedges and backoff runs in milliseconds.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

import orjson

from ironhold.core.errors import IronholdError, UpstreamTimeoutError
from ironhold.upstream.transport import UpstreamRequest

__all__ = ["MockResponse", "MockTransport", "chat_answer", "chat_stream"]

Handler = Callable[[UpstreamRequest], "MockResponse | Awaitable[MockResponse]"]


@dataclass
class MockResponse:
    status: int = 200
    body: bytes = b""
    #: A stream: each chunk is sent after its delay (seconds) has passed.
    stream: Sequence[tuple[float, bytes]] = ()
    #: Before the status and headers: the time to first byte.
    delay: float = 0.0
    headers: Mapping[str, str] = field(default_factory=dict)
    #: Raised after the chunks (a stream that breaks after it began).
    error: IronholdError | None = None
    closed: bool = False

    async def read(self) -> bytes:
        if self.error is not None:
            raise self.error
        return self.body

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        for delay, chunk in self.stream:
            if delay:
                await asyncio.sleep(delay)
            yield chunk
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        self.closed = True


class MockTransport:
    """Answers every request with ``handler``; keeps the requests it was sent."""

    def __init__(self, handler: Handler, healthy: bool = True):
        self._handler = handler
        self.healthy = healthy
        self.requests: list[UpstreamRequest] = []
        self.responses: list[MockResponse] = []

    async def send(self, request: UpstreamRequest) -> MockResponse:
        """As the HTTP transport does, the request's total deadline is kept: an answer that
        would come later raises ``UpstreamTimeoutError`` when the deadline passes. (A stream's
        first-token deadline is the router's to keep.)"""
        self.requests.append(request)
        answer = self._handler(request)
        response = await answer if inspect.isawaitable(answer) else answer
        if response.delay:
            if response.delay >= request.deadlines.total:
                await asyncio.sleep(request.deadlines.total)
                raise UpstreamTimeoutError("the model server did not answer in time")
            await asyncio.sleep(response.delay)
        self.responses.append(response)
        return response

    async def check(self, path: str, within: float) -> bool:
        return self.healthy

    async def close(self) -> None:
        return None


def chat_answer(text: str = "ok", prompt_tokens: int = 5, completion_tokens: int = 1,
                delay: float = 0.0) -> MockResponse:
    """A whole chat completion."""
    body = orjson.dumps({
        "id": "chatcmpl-mock", "object": "chat.completion", "created": 0, "model": "mock",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": text}}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}})
    return MockResponse(body=body, delay=delay, headers={"content-type": "application/json"})


def chat_stream(words: Sequence[str], gap: float = 0.0, delay: float = 0.0,
                usage: bool = True, error: IronholdError | None = None) -> MockResponse:
    """A streamed chat completion: one event a word, ``gap`` seconds apart."""
    def event(doc: object) -> bytes:
        return b"data: " + orjson.dumps(doc) + b"\n\n"

    chunks = [(gap if i else 0.0, event({"id": "c", "object": "chat.completion.chunk",
                                         "choices": [{"index": 0, "delta": {"content": w}}]}))
              for i, w in enumerate(words)]
    if error is None:
        if usage:
            chunks.append((0.0, event({"id": "c", "choices": [], "usage": {
                "prompt_tokens": 5, "completion_tokens": len(words)}})))
        chunks.append((0.0, b"data: [DONE]\n\n"))
    return MockResponse(stream=chunks, delay=delay, error=error,
                        headers={"content-type": "text/event-stream"})
