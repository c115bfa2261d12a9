"""Small, allocation-free statistics the router keeps per deployment and per group.

- ``WindowCounter``: events in a sliding time window, in fixed buckets (O(buckets) to read).
- ``PeakEwma``: the peak-sensitive moving average of latency used by Finagle and Linkerd: a
  slower observation takes effect at once, faster ones pull it down gradually, and it decays
  towards zero while idle so a once-slow deployment is tried again.
- ``LatencyWindow``: the recent latencies of one deployment and a cached percentile of them,
  for the hedging delay.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

Clock = Callable[[], float]


class WindowCounter:
    __slots__ = ("_buckets", "_clock", "_counts", "_stamps", "_width")

    def __init__(self, window: float, buckets: int = 10, clock: Clock = time.monotonic):
        self._width = window / buckets
        self._buckets = buckets
        self._counts = [0] * buckets
        self._stamps = [-1] * buckets
        self._clock = clock

    def measures(self, window: float, clock: Clock) -> bool:
        """Counts over ``window`` seconds of ``clock`` (a reload may keep it)."""
        return self._width * self._buckets == window and self._clock is clock

    def add(self, n: int = 1) -> None:
        index = int(self._clock() / self._width)
        slot = index % self._buckets
        if self._stamps[slot] != index:
            self._stamps[slot] = index
            self._counts[slot] = 0
        self._counts[slot] += n

    def total(self) -> int:
        index = int(self._clock() / self._width)
        oldest = index - self._buckets
        return sum(c for c, s in zip(self._counts, self._stamps, strict=True) if s > oldest)

    def reset(self) -> None:
        self._counts = [0] * self._buckets
        self._stamps = [-1] * self._buckets


class PeakEwma:
    __slots__ = ("_stamp", "_tau", "value")

    def __init__(self, decay: float = 10.0, initial: float = 0.0):
        self._tau = decay
        self.value = initial
        self._stamp = 0.0

    def observe(self, seconds: float, now: float) -> None:
        current = self.current(now)
        if seconds > current:
            self.value = seconds
        else:
            w = math.exp(-(now - self._stamp) / self._tau) if self._stamp else 0.0
            self.value = current * w + seconds * (1.0 - w)
        self._stamp = now

    def current(self, now: float) -> float:
        if not self._stamp:
            return self.value
        # Idle decay towards zero (as Linkerd does), so an idle deployment is probed again.
        return self.value * math.exp(-(now - self._stamp) / self._tau)


def nearest_rank(ordered: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0 to 1) of values sorted ascending, by the nearest-rank method."""
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))]


class LatencyWindow:
    __slots__ = ("_cached", "_fresh", "_next", "_percentile", "_samples", "_size", "count")

    def __init__(self, percentile: float, size: int = 512):
        self._percentile = percentile
        self._size = size
        self._samples: list[float] = []
        self._next = 0
        self.count = 0
        self._cached = 0.0
        self._fresh = 0  # samples added since the percentile was computed

    @property
    def percentile(self) -> float:
        return self._percentile

    def add(self, seconds: float) -> None:
        if len(self._samples) < self._size:
            self._samples.append(seconds)
        else:
            self._samples[self._next] = seconds
            self._next = (self._next + 1) % self._size
        self.count += 1
        self._fresh += 1

    def value(self) -> float:
        """The percentile of the recent samples; recomputed at most every 16 new samples, so
        a read costs O(1) amortised."""
        if self._fresh >= 16 or (self._fresh and len(self._samples) < 64):
            self._cached = nearest_rank(sorted(self._samples), self._percentile / 100)
            self._fresh = 0
        return self._cached
