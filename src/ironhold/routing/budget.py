"""The retry budget: retries and hedges together may add at most a share of a group's requests,
plus a small floor per second, over a sliding window (Finagle's RetryBudget). So when a whole
group fails, the gateway does not multiply the load on it: most requests get one attempt."""

from __future__ import annotations

import time

from ironhold.routing.stats import Clock, WindowCounter


class RetryBudget:
    __slots__ = ("_extras", "_floor", "_ratio", "_requests")

    def __init__(self, percent: float, min_per_second: float, window: float = 10.0,
                 clock: Clock = time.monotonic):
        self._ratio = percent / 100.0
        self._floor = min_per_second * window
        self._requests = WindowCounter(window, clock=clock)
        self._extras = WindowCounter(window, clock=clock)

    def on_request(self) -> None:
        self._requests.add()

    def available(self) -> bool:
        return self._extras.total() + 1 <= self._requests.total() * self._ratio + self._floor

    def spend(self) -> None:
        self._extras.add()

    def usage(self) -> tuple[int, float]:
        """(retries and hedges spent, how many the window allows) now, for the console."""
        return (int(self._extras.total()),
                round(self._requests.total() * self._ratio + self._floor, 1))

    def try_spend(self) -> bool:
        if not self.available():
            return False
        self._extras.add()
        return True
