"""Signals: what the detectors found, as one list (``GET /admin/signals``, the console).

A signal is raised once when its condition starts and ended once when it stops; each change
becomes a metric (``ironhold_signal_active``, ``ironhold_signals``), a log line, a change the
``on_change`` listeners hear (the audit log, the webhook, the console's feed). A detector
raises the same signal again as often as it likes: only a new one counts as a change. Bounded:
ended signals are kept ``keep_ended`` seconds, and at most ``_MAX_KEPT`` of them.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from ironhold.telemetry.metrics import Metrics

__all__ = ["Signal", "SignalBoard", "SignalKind"]

log = logging.getLogger("ironhold.signals")

SignalKind = Literal["latency_spike", "error_spike", "prompt_failure", "drift", "slo_burn",
                     "rollout", "tool_changed"]

#: Ended signals kept for the list at most (the oldest go first).
_MAX_KEPT = 500


def rfc3339(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


@dataclass
class Signal:
    kind: SignalKind
    model: str
    deployment: str | None
    #: What exactly (``ttft``, ``refusals``, ``availability``...): one signal per subject.
    subject: str
    since: float
    detail: dict[str, Any] = field(default_factory=dict)
    ended: float | None = None

    @property
    def active(self) -> bool:
        return self.ended is None

    @property
    def key(self) -> tuple[str, str, str | None, str]:
        return (self.kind, self.model, self.deployment, self.subject)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind, "model": self.model, "deployment": self.deployment,
            "since": rfc3339(self.since), "active": self.active,
            "detail": {"subject": self.subject, **self.detail},
        }
        if self.ended is not None:
            out["ended"] = rfc3339(self.ended)
        return out


Listener = Callable[[Signal], None]


class SignalBoard:
    def __init__(self, metrics: Metrics, keep_ended: float = 86400.0,
                 clock: Callable[[], float] = time.time):
        self._metrics = metrics
        self._keep_ended = keep_ended
        self._clock = clock
        self._active: dict[tuple[str, str, str | None, str], Signal] = {}
        self._ended: OrderedDict[int, Signal] = OrderedDict()
        self._listeners: list[Listener] = []

    def on_change(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def raise_(self, kind: SignalKind, model: str, deployment: str | None, subject: str,
               detail: dict[str, Any], since: float | None = None) -> Signal:
        """The condition holds (now, or since ``since``): a new signal, or the one already
        active with its evidence brought up to date."""
        key = (kind, model, deployment, subject)
        signal = self._active.get(key)
        if signal is not None:
            signal.detail = detail
            return signal
        signal = Signal(kind, model, deployment, subject,
                        since if since is not None else self._clock(), detail)
        self._active[key] = signal
        self._metrics.signal(kind, model, deployment or "", active=True)
        log.warning("signal raised", extra={"signal": kind, "model": model,
                                            "deployment": deployment, "subject": subject,
                                            "detail": detail})
        self._tell(signal)
        return signal

    def clear(self, kind: SignalKind, model: str, deployment: str | None,
              subject: str) -> Signal | None:
        """The condition no longer holds: the signal (if active) ends."""
        signal = self._active.pop((kind, model, deployment, subject), None)
        if signal is None:
            return None
        signal.ended = self._clock()
        self._ended[id(signal)] = signal
        while len(self._ended) > _MAX_KEPT:
            self._ended.popitem(last=False)
        if not any(s.kind == kind and s.model == model and s.deployment == deployment
                   for s in self._active.values()):
            self._metrics.signal(kind, model, deployment or "", active=False)
        log.info("signal ended", extra={"signal": kind, "model": model,
                                        "deployment": deployment, "subject": subject})
        self._tell(signal)
        return signal

    def listing(self) -> list[Signal]:
        """Active signals, then the ended ones still kept, newest first."""
        cutoff = self._clock() - self._keep_ended
        while self._ended:
            oldest = next(iter(self._ended.values()))
            if oldest.ended is not None and oldest.ended >= cutoff:
                break
            self._ended.popitem(last=False)
        ended = sorted(self._ended.values(), key=lambda s: s.ended or 0, reverse=True)
        return [*sorted(self._active.values(), key=lambda s: s.since, reverse=True), *ended]

    def _tell(self, signal: Signal) -> None:
        for listener in self._listeners:
            try:
                listener(signal)
            except Exception:
                log.exception("a signal listener failed")
