"""The typed events a streamed answer is made of, and the two ways a stage takes part in one.

The router decodes a model server's stream once (``core.codec.SseDecoder``) into these events;
stages transform them (the guard redacts a ``Chunk`` or ends the stream with a ``StreamError``)
or observe them (audit, telemetry, limits); the edge encodes each event to bytes once
(``core.codec.encode_event``). No stage sees or parses bytes.

    Chunk        one ``data: {...}`` event: part of the answer, or the usage report
    StreamError  the stream ends with an error in OpenAI's shape (after the commit point)
    Done         ``data: [DONE]``: the answer is complete
    Verbatim     anything else a server sent (a comment, a keep-alive): passed on as it came
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from ironhold.core.errors import IronholdError

__all__ = ["Chunk", "Done", "Event", "EventStream", "Observer", "StreamError", "Verbatim"]


@dataclass(slots=True)
class Chunk:
    """A ``data:`` event holding a JSON object."""

    doc: dict[str, Any]
    #: The JSON as the server sent it; reused when the event goes out unchanged. A stage that
    #: changes ``doc`` calls ``changed()`` so the edge encodes ``doc`` instead.
    raw: bytes | None = None

    def changed(self) -> None:
        self.raw = None


@dataclass(slots=True)
class StreamError:
    """The stream ends with ``error`` (nothing follows it)."""

    error: IronholdError
    #: The server's own error event, passed on as it came (None: the gateway's).
    raw: bytes | None = None


@dataclass(slots=True, frozen=True)
class Done:
    pass


@dataclass(slots=True, frozen=True)
class Verbatim:
    raw: bytes


Event = Chunk | StreamError | Done | Verbatim


class EventStream(Protocol):
    """A streamed answer. ``aclose`` must release everything it holds (the upstream connection,
    the deployment) even if iteration never started, so the edge always calls it."""

    def __aiter__(self) -> AsyncIterator[Event]: ...

    async def __anext__(self) -> Event: ...

    def ready(self) -> bool:
        """True if the next event is already at hand (``__anext__`` will not wait): the edge
        writes the events one read brought as one write."""
        ...

    async def aclose(self) -> None: ...


class Observer(Protocol):
    """A stage that watches a streamed answer without changing it.

    ``on_event`` sees each event and the bytes it went out as (keep it cheap: it runs on the
    hot path). ``on_end`` runs exactly once: before ``[DONE]`` goes out when the answer is
    complete (raising an ``IronholdError`` then replaces ``[DONE]`` with that error, as audit
    does when it cannot record), or when the stream was cut or the client left. ``outcome``
    is ``ok``, ``client_closed``, ``stream_error`` (it ended with an error event), or the code
    of the error an earlier observer raised."""

    def on_event(self, event: Event, data: bytes) -> None: ...

    async def on_end(self, outcome: str) -> None: ...
