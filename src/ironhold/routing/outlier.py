"""Outlier detection: eject deployments that fail, probe them back in.

A deployment is ejected after ``consecutive_failures`` failures in a row (5xx, connect errors,
timeouts; a 429 is back-pressure, not a failure) or when its failure rate over a window passes a
threshold. It stays out for ``base_ejection`` x (times ejected), capped at ``max_ejection``. At
most ``max_ejection_percent`` of a group is out at once, though one deployment always may be.
When its time is up it is half-open: one request is let through; success re-admits it, failure
ejects it again for longer. After a long healthy spell its ejection count is forgotten.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence

from ironhold.config.schema import OutlierConfig
from ironhold.routing.deployment import Deployment
from ironhold.routing.stats import Clock, WindowCounter
from ironhold.telemetry.metrics import Metrics

log = logging.getLogger("ironhold.routing")


class OutlierDetector:
    def __init__(self, group: str, deployments: Sequence[Deployment], config: OutlierConfig,
                 metrics: Metrics, clock: Clock = time.monotonic):
        self._group = group
        self._deployments = deployments
        self._config = config
        self._metrics = metrics
        self._clock = clock
        rate = config.failure_rate
        for d in deployments:
            # A deployment carried over by a reload keeps its window if the window is the same.
            if rate is not None and not d.attempts_window.measures(rate.window, clock):
                d.attempts_window = WindowCounter(rate.window, clock=clock)
                d.failures_window = WindowCounter(rate.window, clock=clock)
        self._max_ejected = max(1, math.floor(len(deployments) * config.max_ejection_percent
                                              / 100))

    def admits(self, d: Deployment, now: float) -> bool:
        """May ``d`` take a request now (not ejected, or half-open with no probe in flight)?"""
        return not d.ejected or (d.ejected_until <= now and not d.probing)

    def picked(self, d: Deployment) -> None:
        if d.ejected:
            d.probing = True  # the half-open probe
            log.info("probing ejected deployment", extra={
                "model": self._group, "deployment": d.name, "ejections": d.ejections})

    def abandoned(self, d: Deployment) -> None:
        """The attempt ended without an outcome (cancelled): a probe may be sent again."""
        d.probing = False

    def success(self, d: Deployment) -> None:
        d.consecutive_failures = 0
        if self._config.failure_rate is not None:
            d.attempts_window.add()
        if d.ejected:
            self._readmit(d)
        elif d.ejections and self._clock() - d.admitted_at > self._config.max_ejection:
            d.ejections = 0

    def failure(self, d: Deployment, reason: str) -> None:
        d.consecutive_failures += 1
        d.last_error = reason
        rate = self._config.failure_rate
        if rate is not None:
            d.attempts_window.add()
            d.failures_window.add()
        if not self._config.enabled:
            return
        if d.ejected:
            if d.probing:
                d.probing = False
                self._eject(d, "probe_failed", forced=True)
            return
        if d.consecutive_failures >= self._config.consecutive_failures:
            self._eject(d, "consecutive_failures")
        elif rate is not None:
            attempts = d.attempts_window.total()
            if (attempts >= rate.min_requests
                    and d.failures_window.total() * 100 >= rate.threshold_percent * attempts):
                self._eject(d, "failure_rate")

    def ejected_count(self) -> int:
        return sum(1 for d in self._deployments if d.ejected)

    def _eject(self, d: Deployment, reason: str, forced: bool = False) -> None:
        if not forced and self.ejected_count() >= self._max_ejected:
            return  # the cap: the rest of the group must keep serving
        now = self._clock()
        d.ejections += 1
        seconds = min(self._config.base_ejection * d.ejections, self._config.max_ejection)
        d.ejected = True
        d.ejection_reason = reason
        d.ejected_until = now + seconds
        d.probing = False
        d.consecutive_failures = 0
        d.attempts_window.reset()
        d.failures_window.reset()
        self._metrics.ejection(self._group, d.name, reason)
        self._metrics.set_ejected(self._group, d.name, True)
        log.warning("deployment ejected", extra={
            "model": self._group, "deployment": d.name, "reason": reason,
            "ejection_seconds": seconds, "ejections": d.ejections})

    def _readmit(self, d: Deployment) -> None:
        d.ejected = False
        d.probing = False
        d.admitted_at = self._clock()
        self._metrics.set_ejected(self._group, d.name, d.check_failed)
        log.info("deployment re-admitted", extra={
            "model": self._group, "deployment": d.name, "ejections": d.ejections})
