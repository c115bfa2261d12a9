"""An ``Attempt``: one upstream call, and the one owner of everything it counts.

An attempt takes a place in its deployment's outstanding count when it is made and gives it
back exactly once (``release``), whichever way it ends: answered, failed, lost a hedge race,
cancelled because the client left, timed out, or, for a stream, when the stream is closed. Its
outcome is reported exactly once to the outlier detector, the latency statistics and the
metrics; the one exception is a stream that breaks after it was committed, which is reported
again as a failure (it did fail, after it had answered).

Requests that carry their own faults (an admin's header, a chaos key) are tests: their
outcomes are not *shared* (no ejection, no latency penalty, no throttling for other callers).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from ironhold.core.errors import IronholdError, UpstreamError, UpstreamThrottledError
from ironhold.core.trace import AttemptRecord
from ironhold.routing.deployment import Deployment
from ironhold.routing.stats import Clock

if TYPE_CHECKING:
    from ironhold.routing.group import ModelGroup

__all__ = ["Attempt"]

log = logging.getLogger("ironhold.routing")

#: A Retry-After longer than this is not believed (a misbehaving server must not park a
#: deployment for a day).
MAX_RETRY_AFTER = 300.0
#: Without a Retry-After, a 429 parks the deployment this long.
DEFAULT_RETRY_AFTER = 1.0


class Attempt:
    __slots__ = ("_clock", "_released", "_reported", "deployment", "group", "hedge", "record",
                 "shared", "started")

    def __init__(self, group: ModelGroup, deployment: Deployment, *, shared: bool = True,
                 clock: Clock = time.monotonic, hedge: bool = False,
                 record: AttemptRecord | None = None):
        self.group = group
        self.deployment = deployment
        self.shared = shared
        #: A copy sent while another attempt of the same request was still waiting.
        self.hedge = hedge
        #: The attempt's trace record (None: the request is not traced).
        self.record = record
        self._clock = clock
        self.started = clock()
        self._reported = False
        self._released = False
        deployment.outstanding += 1

    # -- outcomes: the first one reported counts ------------------------------------------------

    def answered(self, status: int) -> None:
        """The deployment answered with ``status`` (for a stream: its first chunk came)."""
        if self._reported:
            return
        self._reported = True
        if self.record is not None:
            self.record.outcome = str(status)
            self.record.answered_at = time.perf_counter()
        group, d = self.group, self.deployment
        if not self.shared:
            group.outlier.abandoned(d)
        elif status < 500:
            now = self._clock()
            d.latency.observe(now - self.started, now)
            if status < 400:
                d.recent.add(now - self.started)
            group.outlier.success(d)
            group.attempted(d, False, now - self.started)
        else:
            group.attempted(d, True, None)
        group.metrics.upstream_attempt(group.name, d.name, str(status))

    def failed(self, exc: UpstreamError, request_id: str = "", number: int = 0) -> None:
        """The attempt failed before its commit point (worth trying elsewhere)."""
        if self._reported:
            return
        self._reported = True
        if self.record is not None:
            self.record.end(exc.code)
        group, d = self.group, self.deployment
        now = self._clock()
        if isinstance(exc, UpstreamThrottledError):
            # Back-pressure, not a failure: the deployment rests for its Retry-After.
            wait = exc.retry_after if exc.retry_after is not None else DEFAULT_RETRY_AFTER
            if self.shared:
                d.throttled_until = max(d.throttled_until, now + min(wait, MAX_RETRY_AFTER))
            group.outlier.abandoned(d)
        elif self.shared:
            # A failure makes the deployment look slow to peak-EWMA: it loses P2C contests.
            d.latency.observe(max(now - self.started, 4 * d.latency.current(now), 0.05), now)
            group.outlier.failure(d, exc.code)
            group.attempted(d, True, None)
        else:
            group.outlier.abandoned(d)
        group.metrics.upstream_attempt(group.name, d.name, exc.code)
        log.warning("upstream attempt failed", extra={
            "request_id": request_id, "model": group.name, "deployment": d.name,
            "attempt": number, "error": exc.code, "detail": exc.message})

    def abandoned(self) -> None:
        """The attempt ended without an outcome (cancelled: a lost hedge, the client left)."""
        if self._reported:
            return
        self._reported = True
        if self.record is not None:
            self.record.end("cancelled")
        self.group.outlier.abandoned(self.deployment)

    def broke(self, exc: IronholdError) -> None:
        """A stream broke after its commit point: a failure of the deployment all the same."""
        group, d = self.group, self.deployment
        if self.record is not None:
            self.record.outcome = f"stream_{exc.code}"
        if self.shared:
            group.outlier.failure(d, exc.code)
            group.attempted(d, True, None)
        group.metrics.upstream_attempt(group.name, d.name, f"stream_{exc.code}")
        log.warning("stream broke after the commit point", extra={
            "model": group.name, "deployment": d.name, "error": exc.code,
            "detail": exc.message})

    # -- the outstanding count ------------------------------------------------------------------

    def release(self) -> None:
        """Give the deployment its place back (and wake one request waiting for capacity)."""
        if self._released:
            return
        self._released = True
        if not self._reported:
            self.abandoned()
        if self.record is not None:
            self.record.end()
        self.group.released(self.deployment)

    @property
    def released(self) -> bool:
        return self._released
