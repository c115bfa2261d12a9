"""Delivering a streamed reply: its events encoded to bytes once, each shown to the observers,
and every observer told exactly once how the stream ended."""

from __future__ import annotations

import logging

from ironhold.core.codec import encode_event
from ironhold.core.errors import IronholdError
from ironhold.core.events import Done, StreamError
from ironhold.core.exchange import Reply

__all__ = ["Delivery"]

log = logging.getLogger("ironhold.core")


class Delivery:
    """The bytes of a streamed reply, for the edge to write.

    When ``[DONE]`` comes, every observer's ``on_end`` runs before it goes out (audit makes the
    record durable then); an observer that raises replaces ``[DONE]`` with its error. A stream
    that ends otherwise (an error event, cut, the client gone) ends the observers in
    ``aclose``, which the edge always calls."""

    __slots__ = ("_ended", "_error", "_reply")

    def __init__(self, reply: Reply):
        assert reply.events is not None
        self._reply = reply
        self._error = ""
        self._ended = False

    def __aiter__(self) -> Delivery:
        return self

    async def __anext__(self) -> bytes:
        """The bytes of the next event, and of every event after it that is already at hand
        (one write for what one upstream read brought, not one write per event)."""
        events = self._reply.events
        assert events is not None
        if self._ended:
            raise StopAsyncIteration
        out: list[bytes] = []
        while True:
            try:
                event = await anext(events)
            except StopAsyncIteration:
                if out:
                    return b"".join(out)
                raise
            data = encode_event(event)
            for observer in self._reply.observers:
                observer.on_event(event, data)
            if isinstance(event, StreamError):
                self._error = "stream_error"
            elif isinstance(event, Done):
                veto = await self._end(self._error or "ok")
                out.append(data if veto is None else encode_event(StreamError(veto)))
                return b"".join(out)
            out.append(data)
            if not events.ready():
                return b"".join(out)

    async def aclose(self, client_gone: bool = False) -> None:
        """Close the events (releasing the upstream) and end the observers if they have not
        been ended. ``client_gone``: the client left before the stream was over."""
        events = self._reply.events
        assert events is not None
        try:
            await events.aclose()
        finally:
            if not self._ended:
                await self._end("client_closed" if client_gone else self._error or "ok")

    async def _end(self, outcome: str) -> IronholdError | None:
        self._ended = True
        veto: IronholdError | None = None
        for observer in self._reply.observers:
            try:
                await observer.on_end(outcome)
            except IronholdError as exc:
                veto = veto or exc
                outcome = exc.code
            except Exception:  # one observer's bug must not keep the others from their end
                log.exception("a stream observer failed")
        return veto
