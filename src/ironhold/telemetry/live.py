"""The last seconds of traffic, for the console: requests per second, error rate, and latency
and time-to-first-token percentiles per model group and per deployment, from one-second slots
(counters and a t-digest each) over a ten-second window. Bounded: ten slots per key, and the
keys are the server's own group and deployment names."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from fastdigest import TDigest

__all__ = ["LiveStats"]

WINDOW = 10
_CENTROIDS = 100


@dataclass(slots=True)
class _Slot:
    second: int
    requests: int = 0
    errors: int = 0
    latency: TDigest = field(default_factory=lambda: TDigest(_CENTROIDS))
    ttft: TDigest = field(default_factory=lambda: TDigest(_CENTROIDS))


class LiveStats:
    def __init__(self) -> None:
        self._slots: dict[tuple[str, str | None], deque[_Slot]] = {}

    def add(self, model: str, deployment: str | None, latency: float, ttft: float | None,
            server_error: bool, now: float) -> None:
        second = int(now)
        for key in ((model, None), (model, deployment)) if deployment else ((model, None),):
            slots = self._slots.get(key)
            if slots is None:
                slots = self._slots[key] = deque(maxlen=WINDOW)
            if not slots or slots[-1].second != second:
                slots.append(_Slot(second))
            slot = slots[-1]
            slot.requests += 1
            slot.errors += server_error
            if not server_error:
                slot.latency.update(latency)
                if ttft is not None:
                    slot.ttft.update(ttft)

    def of(self, model: str, deployment: str | None, now: float) -> dict[str, Any]:
        """Rates and percentiles (milliseconds) over the last ``WINDOW`` whole seconds."""
        slots = [s for s in self._slots.get((model, deployment), ())
                 if int(now) - WINDOW <= s.second < int(now)]
        requests = sum(s.requests for s in slots)
        errors = sum(s.errors for s in slots)
        out: dict[str, Any] = {"rps": round(requests / WINDOW, 2),
                               "error_rate": round(errors / requests, 4) if requests else 0.0}
        for name in ("latency", "ttft"):
            digests = [getattr(s, name) for s in slots if not getattr(s, name).is_empty()]
            if not digests:
                out[f"{name}_p50_ms"] = out[f"{name}_p99_ms"] = None
                continue
            merged = digests[0].copy()
            for other in digests[1:]:
                merged.merge_inplace(other)
            out[f"{name}_p50_ms"] = round(merged.quantile(0.5) * 1000, 1)
            out[f"{name}_p99_ms"] = round(merged.quantile(0.99) * 1000, 1)
        return out
