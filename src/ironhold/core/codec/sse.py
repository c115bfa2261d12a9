"""Server-sent events: an incremental decoder that buffers across chunk boundaries, and the
encoder the edge uses. An event split over any number of TCP reads decodes the same as one
that arrived whole."""

from __future__ import annotations

import re

import orjson

from ironhold.core.codec.errors import error_event
from ironhold.core.errors import BadGatewayError, UpstreamError
from ironhold.core.events import Chunk, Done, Event, StreamError, Verbatim

__all__ = ["MAX_EVENT_BYTES", "SseDecoder", "encode_event"]

#: No event is longer than this; a server that sends one is broken (or hostile), and the
#: stream ends with an error rather than being buffered without bound.
MAX_EVENT_BYTES = 1 << 20
#: The blank line that ends an event (LF or CRLF framing).
_EVENT_END = re.compile(rb"\r?\n\r?\n")
_SEP = b"\n\n"
_DONE = b"data: [DONE]\n\n"


class SseDecoder:
    """Feed it bytes as they arrive; it returns the events they complete."""

    __slots__ = ("_buffer", "_limit")

    def __init__(self, max_event_bytes: int = MAX_EVENT_BYTES):
        self._buffer = b""
        self._limit = max_event_bytes

    def feed(self, data: bytes) -> list[Event]:
        held = self._buffer
        buf = held + data if held else data
        events: list[Event] = []
        at = 0
        # What was held has no event end in it: look only where a new one can be (an end
        # split across reads starts at most 3 bytes back).
        for match in _EVENT_END.finditer(buf, max(0, len(held) - 3)):
            if match.start() > at:
                events.append(decode_event(buf[at:match.start()]))
            at = match.end()
        self._buffer = buf[at:] if at else buf
        if len(self._buffer) > self._limit:
            self._buffer = b""
            raise BadGatewayError(
                f"the model server sent a stream event longer than {self._limit} bytes")
        return events

    def finish(self) -> list[Event]:
        """The last event of a stream that did not end it with a blank line."""
        rest, self._buffer = self._buffer.strip(), b""
        return [decode_event(rest)] if rest else []


def decode_event(raw: bytes) -> Event:
    """One event (without its blank line)."""
    if raw.startswith(b"data:") and b"\n" not in raw:
        payload = raw[5:].strip()  # the common case: one data line
    else:
        lines = raw.splitlines()
        if not all(line.startswith(b"data:") for line in lines):
            return Verbatim(raw)  # comments, named events, ids: not OpenAI's, passed on
        payload = b"\n".join(line[5:].strip() for line in lines)
    if payload == b"[DONE]":
        return Done()
    if payload.startswith(b"{"):
        try:
            doc = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return Verbatim(raw)
        if isinstance(doc, dict):
            if "error" in doc:
                return StreamError(_error_of(doc["error"]), raw=payload)
            return Chunk(doc, payload)
    return Verbatim(raw)


def encode_event(event: Event) -> bytes:
    if isinstance(event, Chunk):
        return b"data: " + (event.raw if event.raw is not None else orjson.dumps(event.doc)) \
            + _SEP
    if isinstance(event, Done):
        return _DONE
    if isinstance(event, StreamError):
        if event.raw is not None:
            return b"data: " + event.raw + _SEP
        return error_event(event.error)
    return event.raw + _SEP


def _error_of(error: object) -> UpstreamError:
    """An error event's error (its message and code, when they are what they should be)."""
    fields = error if isinstance(error, dict) else {"message": error}
    message, code = fields.get("message"), fields.get("code") or fields.get("type")
    return UpstreamError(str(message)[:500] if message else "the stream reported an error",
                         code=code if isinstance(code, str) and len(code) <= 64 else None)
