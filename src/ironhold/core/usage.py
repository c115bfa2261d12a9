"""Token usage as model servers report it: in a JSON body, or in a stream's usage chunk; and
counted from what a stream delivers when no usage is reported."""

from __future__ import annotations

import math
import re
from typing import Any

import orjson

from ironhold.core.exchange import Exchange, Usage
from ironhold.core.tokens import estimate_prompt_tokens

#: Usage figures past this are not believed (a model server's bug or lie must not overflow a
#: counter or a record).
MAX_REPORTED_TOKENS = 1 << 31
#: An event held back longer than this, still unfinished, is passed on as it is.
_MAX_EVENT_BYTES = 1 << 20
#: The blank line that ends a server-sent event (LF or CRLF framing).
_EVENT_END = re.compile(rb"\r?\n\r?\n")


def usage_of(body: bytes) -> Usage | None:
    if b'"usage"' not in body:
        return None
    try:
        return _parse_usage(orjson.loads(body).get("usage"))
    except (orjson.JSONDecodeError, AttributeError):
        return None


def usage_in_sse(chunk: bytes) -> Usage | None:
    for line in chunk.split(b"\n"):
        if line.startswith(b"data: {") and b'"usage"' in line:
            try:
                usage = _parse_usage(orjson.loads(line[6:]).get("usage"))
            except (orjson.JSONDecodeError, AttributeError):
                continue
            if usage is not None:
                return usage
    return None


def observe_sse(chunk: bytes, exchange: Exchange) -> bool:
    """Take the usage from a streamed chunk that carries it; True if the chunk holds an error
    event (a stream that broke after the commit point)."""
    if b'"usage":{' in chunk or b'"usage": {' in chunk:
        usage = usage_in_sse(chunk)
        if usage is not None:
            exchange.usage = usage
    return chunk.startswith(b'data: {"error"') or b'\n\ndata: {"error"' in chunk


def _parse_usage(raw: object) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    prompt, completion = raw.get("prompt_tokens"), raw.get("completion_tokens", 0)
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    if not (0 <= prompt < MAX_REPORTED_TOKENS and 0 <= completion < MAX_REPORTED_TOKENS):
        return None
    return Usage(prompt_tokens=prompt, completion_tokens=completion)


class StreamUsage:
    """What a streamed answer used, whether or not the client asked for usage.

    The router asks the model server for a usage event (``stream_options.include_usage``)
    on every stream; when the client did not ask for one itself, that event is taken out of
    what the client receives (``feed`` returns the bytes to pass on). Model servers that send
    no usage event (llama-cpp-python's) are counted from the events: the generated characters
    at about four a token, and at least one token an event that carries text, with the prompt
    at its admission estimate. Either way ``finish`` leaves ``exchange.usage`` set, so limits
    and budgets are charged for what was delivered (a stream without ``include_usage`` used
    to be charged its reservation only)."""

    __slots__ = ("_chars", "_events", "_exchange", "_hide", "_pending", "_reported")

    def __init__(self, exchange: Exchange, hide_usage: bool):
        self._exchange = exchange
        self._hide = hide_usage
        self._pending = b""
        self._reported: Usage | None = None
        self._chars = 0
        self._events = 0

    def feed(self, chunk: bytes) -> bytes:
        """Account for ``chunk``; returns the whole events it completes, to pass on."""
        data = self._pending + chunk if self._pending else chunk
        end = 0
        for match in _EVENT_END.finditer(data):
            end = match.end()
        if end == 0:
            if len(data) > _MAX_EVENT_BYTES:
                # No event is this long: not SSE as it should be. Passed on unparsed (never
                # buffered whole), its bytes counted as text.
                self._pending = b""
                self._chars += len(data)
                return data
            self._pending = data
            return b""
        self._pending = data[end:]
        out = []
        at = 0
        for match in _EVENT_END.finditer(data, 0, end):
            event = data[at:match.end()]
            at = match.end()
            if self._keep(event):
                out.append(event)
        return b"".join(out)

    def flush(self) -> bytes:
        """What is left of an event the stream never finished (passed on as it is)."""
        rest, self._pending = self._pending, b""
        return rest

    def finish(self) -> None:
        """Set ``exchange.usage``: as reported, or counted."""
        exchange = self._exchange
        if self._reported is not None:
            exchange.usage = self._reported
            return
        if exchange.usage is not None:
            return
        prompt = exchange.estimated_tokens
        if prompt is None:
            prompt = estimate_prompt_tokens(exchange.operation, exchange.body)
        completion = max(self._events, math.ceil(self._chars / 4))
        exchange.usage = Usage(prompt_tokens=prompt, completion_tokens=completion)

    def _keep(self, event: bytes) -> bool:
        for line in event.splitlines():
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if not payload.startswith(b"{"):
                continue  # [DONE]
            if b'"usage"' not in payload and b'"content"' not in payload \
                    and b'"text"' not in payload and b'"arguments"' not in payload:
                continue
            try:
                doc = orjson.loads(payload)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(doc, dict):
                continue
            usage = _parse_usage(doc.get("usage"))
            if usage is not None:
                self._reported = usage
                if self._hide and not doc.get("choices"):
                    return False  # the client did not ask for it
            self._count(doc.get("choices"))
        return True

    def _count(self, choices: Any) -> None:
        if not isinstance(choices, list):
            return
        chars = 0
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta")
            if isinstance(delta, dict):
                content = delta.get("content")
                chars += len(content) if isinstance(content, str) else 0
                for call in delta.get("tool_calls") or ():
                    function = call.get("function") if isinstance(call, dict) else None
                    arguments = function.get("arguments") if isinstance(function, dict) else None
                    chars += len(arguments) if isinstance(arguments, str) else 0
            text = choice.get("text")
            chars += len(text) if isinstance(text, str) else 0
        if chars:
            self._chars += chars
            self._events += 1
