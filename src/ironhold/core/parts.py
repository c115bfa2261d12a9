"""Parts: what a gateway is built from that holds state or owns something (a connection pool, a
child process, a background task), each filed under a name and the config that made it.

A gateway rebuilt from a new config takes over every part of the old one whose config did not
change, so what that part knows carries over (outlier ejections, latency statistics, limit
counters, open connections, a local model's process); the parts it did not take are *retired*:
closed once the old gateway's last request has finished. A part is started once, whichever
gateway started it, and closed once, by whichever gateway holds it last.

    parts = Parts(previous)
    store = parts.take("state", config.state)
    if store is None:
        store = open_store(config.state)
        parts.add("state", config.state, store, close=store.aclose)
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = ["Closer", "Part", "Parts", "close_parts"]

log = logging.getLogger("ironhold")

T = TypeVar("T")
#: Stops or closes a part (its task, its pool, its process).
Closer = Callable[[], Awaitable[object]]


@dataclass(eq=False, slots=True)
class Part:
    name: str
    #: What made it: compared with ``==`` (pydantic models compare field by field, secrets
    #: by their values), never shown.
    made_from: Any
    value: Any
    start: Closer | None = None
    #: Run in order when the part is closed (e.g. a log's writer before its store).
    closers: list[Closer] = field(default_factory=list)
    started: bool = False


class Parts:
    def __init__(self, previous: Parts | None = None):
        self._previous = previous
        self._parts: dict[str, Part] = {}
        self._on_commit: list[Callable[[], None]] = []

    def take(self, name: str, made_from: Any) -> Any | None:
        """The previous gateway's part of this name if it was made from an equal config
        (now this gateway's too), else None."""
        if self._previous is None:
            return None
        old = self._previous._parts.get(name)
        if old is None or old.made_from != made_from:
            return None
        self._parts[name] = old
        return old.value

    def previous(self, name: str) -> Any | None:
        """The previous gateway's part of this name, whatever made it (to carry state from)."""
        if self._previous is None:
            return None
        old = self._previous._parts.get(name)
        return None if old is None else old.value

    def add(self, name: str, made_from: Any, value: T, *, start: Closer | None = None,
            close: Closer | list[Closer] | None = None) -> T:
        if name in self._parts:
            raise ValueError(f"two parts named {name!r}")
        closers = close if isinstance(close, list) else [] if close is None else [close]
        self._parts[name] = Part(name, made_from, value, start, closers)
        return value

    def __iter__(self) -> Iterator[Part]:
        return iter(self._parts.values())

    def __contains__(self, part: Part) -> bool:
        return self._parts.get(part.name) is part

    async def start(self) -> None:
        """Start the parts no gateway has started yet, in the order they were added."""
        for part in self._parts.values():
            if not part.started and part.start is not None:
                await part.start()
            part.started = True

    def on_commit(self, change: Callable[[], None]) -> None:
        """Change a part taken over only once this gateway is the one serving (``commit``):
        until then the previous gateway goes on using it as it was, and if this one never
        starts, it never changes."""
        self._on_commit.append(change)

    def commit(self) -> None:
        changes, self._on_commit = self._on_commit, []
        for change in changes:
            change()

    def new(self) -> list[Part]:
        """The parts this gateway made itself (not taken over)."""
        previous = self._previous
        return [p for p in self._parts.values() if previous is None or p not in previous]

    def retired(self) -> list[Part]:
        """The previous gateway's parts this one did not take."""
        if self._previous is None:
            return []
        return [p for p in self._previous if p not in self]

    def forget_previous(self) -> None:
        self._previous = None


async def close_parts(parts: list[Part]) -> None:
    """Close parts, the last added first; a failure is logged and the rest still close."""
    for part in reversed(parts):
        for close in part.closers:
            try:
                await close()
            except Exception:
                log.exception("closing a resource failed", extra={"part": part.name})
