"""A request's trace as it runs: its W3C ids and small records of what happened, from which
``telemetry.traces`` makes OpenTelemetry spans once the request has ended.

Nothing here calls the OpenTelemetry SDK: a request that is not kept costs only these
records. The router asks for an ``AttemptRecord`` per upstream attempt (and sends its
``traceparent`` to the model server); traced stages add a ``StageMark`` as they begin.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

__all__ = ["AttemptRecord", "StageMark", "TraceContext", "new_span_id", "new_trace_id"]


# Random, not secret: the OpenTelemetry SDK makes its ids the same way (the ``random``
# module's generator, reseeded in a forked child), a tenth of a system call's cost.
def new_trace_id() -> int:
    return random.getrandbits(128) or 1


def new_span_id() -> int:
    return random.getrandbits(64) or 1


@dataclass(slots=True)
class AttemptRecord:
    """One upstream attempt, for its span."""

    span_id: int
    deployment: str
    number: int
    #: ``first``, ``retry`` or ``hedge``.
    kind: str
    started: float = field(default_factory=time.perf_counter)
    #: When the deployment answered (a stream: its first chunk); None if it never did.
    answered_at: float | None = None
    ended: float | None = None
    #: An HTTP status, an error code, ``cancelled``, or ``stream_<code>`` for a stream that
    #: broke after its commit point.
    outcome: str = ""

    def end(self, outcome: str | None = None) -> None:
        if outcome is not None and not self.outcome:
            self.outcome = outcome
        if self.ended is None:
            self.ended = time.perf_counter()


@dataclass(slots=True)
class StageMark:
    """A decision stage began at ``started``; it ends where the next one begins (or the
    request, if it refused)."""

    stage: str
    started: float
    #: The error code the stage refused with.
    refused: str = ""


@dataclass(slots=True)
class TraceContext:
    trace_id: int
    #: The gateway's server span for this request.
    span_id: int
    #: The client's span (from its ``traceparent``), if it sent one.
    parent_id: int | None
    #: Sampled at the start (parent-based ratio). A request not sampled may still be kept at
    #: its end (failed or slow), but its model server was told it is not sampled.
    sampled: bool
    tracestate: str | None = None
    #: ``time.time_ns()`` and ``time.perf_counter()`` read together at the start: the spans'
    #: wall-clock times are computed from the perf counter readings taken along the way.
    wall_ns: int = field(default_factory=time.time_ns)
    perf: float = field(default_factory=time.perf_counter)
    attempts: list[AttemptRecord] = field(default_factory=list)
    marks: list[StageMark] = field(default_factory=list)

    def attempt(self, deployment: str, number: int, hedge: bool) -> AttemptRecord:
        kind = "hedge" if hedge else "first" if number == 1 else "retry"
        record = AttemptRecord(new_span_id(), deployment, number, kind)
        self.attempts.append(record)
        return record

    def traceparent(self, span_id: int) -> str:
        """The header that makes ``span_id`` the parent of the model server's spans."""
        return f"00-{self.trace_id:032x}-{span_id:016x}-{'01' if self.sampled else '00'}"

    def propagated(self, span_id: int) -> dict[str, str]:
        """The W3C trace-context headers for a model server: its spans become children of
        ``span_id`` (an attempt's), and the client's ``tracestate`` travels on."""
        headers = {"traceparent": self.traceparent(span_id)}
        if self.tracestate:
            headers["tracestate"] = self.tracestate
        return headers

    def ns(self, perf: float) -> int:
        """A perf-counter reading as Unix time in nanoseconds."""
        return self.wall_ns + int((perf - self.perf) * 1e9)
