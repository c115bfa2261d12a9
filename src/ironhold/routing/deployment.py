"""A ``Deployment``: one place a model group is served from, and what the router knows of it."""

from __future__ import annotations

from dataclasses import dataclass, field

from ironhold.routing.stats import LatencyWindow, PeakEwma, WindowCounter
from ironhold.upstream.transport import Transport


@dataclass(eq=False)
class Deployment:
    name: str
    group: str
    upstream_model: str
    transport: Transport
    weight: float = 1.0
    #: Bulkhead: requests in flight at most (None: no cap).
    max_concurrent: int | None = None
    #: False while a managed local server is starting or restarting.
    available: bool = True
    #: The served model file's pinned SHA-256 (managed local models), for the audit record.
    digest: str | None = None
    #: The operator's label for what it serves (``version`` in the config).
    version: str | None = None
    #: ``max_tokens`` sent for a request that sets no cap of its own (None: send none).
    default_max_tokens: int | None = None
    outstanding: int = 0
    #: Time to first byte (streams: first chunk; otherwise the whole answer), peak-EWMA.
    latency: PeakEwma = field(default_factory=PeakEwma)
    #: Recent times to first byte, for the hedging delay (percentile set by the group).
    recent: LatencyWindow = field(default_factory=lambda: LatencyWindow(95.0))
    #: The model server said 429 with Retry-After: not sent to before this (monotonic) time.
    throttled_until: float = 0.0

    # Outlier detection state, owned by ``OutlierDetector``.
    consecutive_failures: int = 0
    attempts_window: WindowCounter = field(default_factory=lambda: WindowCounter(10.0))
    failures_window: WindowCounter = field(default_factory=lambda: WindowCounter(10.0))
    ejected: bool = False
    ejected_until: float = 0.0
    ejections: int = 0
    #: Why it was last ejected (``consecutive_failures``, ``failure_rate``, ``probe_failed``)
    #: and the last failure's error code, for the console.
    ejection_reason: str = ""
    last_error: str = ""
    admitted_at: float = 0.0
    #: Half-open: the one request allowed through after an ejection expired is in flight.
    probing: bool = False
    #: Active health checks failed (a second signal, independent of ejection).
    check_failed: bool = False

    @property
    def full(self) -> bool:
        return self.max_concurrent is not None and self.outstanding >= self.max_concurrent

    @property
    def healthy(self) -> bool:
        """Up, not ejected and passing health checks (what /readyz reports)."""
        return self.available and not self.ejected and not self.check_failed

    def state(self, now: float) -> tuple[str, dict[str, object]]:
        """What the console shows: ``healthy``, ``starting`` (a managed server not up),
        ``unhealthy`` (failing health checks), ``ejected`` (and why, and for how long),
        ``half_open`` (its ejection is over and a probe decides), ``throttled`` (the server
        asked for a pause) or ``bulkhead_full``; ``now`` on the router's clock."""
        if not self.available:
            return "starting", {}
        if self.check_failed:
            return "unhealthy", {"reason": "health_check"}
        if self.ejected:
            why = {"reason": self.ejection_reason, "last_error": self.last_error,
                   "ejections": self.ejections}
            if self.ejected_until <= now:
                return "half_open", {**why, "probing": self.probing}
            return "ejected", {**why, "seconds_left": round(self.ejected_until - now, 1)}
        if self.throttled_until > now:
            return "throttled", {"seconds_left": round(self.throttled_until - now, 1)}
        if self.full:
            return "bulkhead_full", {"max_concurrent": self.max_concurrent}
        return "healthy", {}

    def cost(self, now: float) -> float:
        """Peak-EWMA cost: expected latency times the work queued ahead, per unit of weight."""
        return (self.latency.current(now) + 1e-4) * (self.outstanding + 1) / self.weight
