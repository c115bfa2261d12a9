"""Label-free drift of a model group: what its prompts and answers look like now, against a
reference window.

Each request is reduced to a few binned features (prompt length, answer length, time to first
token: log-scale bins; finish reason, script, refusal, tool call: categories). The reference
holds the counts of its first ``reference`` requests (or of the requests since an admin reset
or pinned it); the current window holds the last ``window`` requests' features in a ring, so
its counts slide. Each feature's two histograms are compared with a chi-square test of
homogeneity (bins with too few expected counts merged), and drift is called when a feature's
p-value, times the number of features (Bonferroni), is below ``p_value``. Memory: the
reference's counts and the window's ring, nothing that grows with traffic.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

from ironhold.telemetry.outcome import CallOutcome

__all__ = ["DriftDetector", "chi2_sf", "features_of"]

FEATURES = ("prompt_length", "answer_length", "finish_reason", "script", "refusal",
            "tool_call", "ttft")
#: Expected counts below this make a bin unreliable: it is merged with its neighbour.
_MIN_EXPECTED = 5.0


#: Bin names for powers of two (lengths in characters, times in quarter milliseconds).
_BINS = tuple(str(i) for i in range(25))


def _log_bin(value: int) -> str:
    """Powers-of-two bins: 0, 1, 2-3, 4-7, ... (capped)."""
    return _BINS[min(24, value.bit_length())]


def features_of(outcome: CallOutcome) -> tuple[str, ...] | None:
    """The request's features, or None if it says nothing of the model (refused before it)."""
    facts = outcome.facts
    if facts is None or outcome.deployment is None:
        return None
    return (
        _log_bin(outcome.prompt_chars),
        _log_bin(facts.chars),
        facts.finish_reasons[0] if facts.finish_reasons else "none",
        outcome.script,
        "yes" if facts.refused else "no",
        "yes" if facts.tool_calls else "no",
        _log_bin(int(outcome.ttft * 4000)) if outcome.ttft is not None else "n/a",
    )


@dataclass(slots=True)
class DriftResult:
    drifted: bool
    #: The feature with the smallest p-value, its p-value (Bonferroni-corrected) and the
    #: statistic.
    feature: str
    p_value: float
    statistic: float
    evidence: dict[str, Any]


class DriftDetector:
    def __init__(self, reference: int, window: int, p_value: float):
        self._reference_size = reference
        self._window_size = window
        self._p_value = p_value
        self._reference: list[dict[str, int]] = [{} for _ in FEATURES]
        self._reference_n = 0
        self._window: deque[tuple[str, ...]] = deque(maxlen=window)
        #: What the reference is (``first requests``, ``reset at ...``, a pinned label).
        self.reference_label = "the first requests"
        self.firing = False

    @property
    def reference_full(self) -> bool:
        return self._reference_n >= self._reference_size

    def add(self, features: tuple[str, ...]) -> None:
        if not self.reference_full:
            for counts, value in zip(self._reference, features, strict=True):
                counts[value] = counts.get(value, 0) + 1
            self._reference_n += 1
            return
        # The window's counts are made when it is judged (every few seconds), not here.
        self._window.append(features)

    def reset(self, label: str) -> None:
        """Start a new reference from the next requests."""
        self._reference = [{} for _ in FEATURES]
        self._reference_n = 0
        self._window.clear()
        self.reference_label = label
        self.firing = False

    def judge(self) -> DriftResult | None:
        """None until the reference and the window are both full."""
        if not self.reference_full or len(self._window) < self._window_size:
            return None
        current: list[dict[str, int]] = [{} for _ in FEATURES]
        for features in self._window:
            for counts, value in zip(current, features, strict=True):
                counts[value] = counts.get(value, 0) + 1
        best: tuple[float, float, str] | None = None
        for name, ref, cur in zip(FEATURES, self._reference, current, strict=True):
            statistic, dof = _chi2_homogeneity(ref, cur)
            if dof == 0:
                continue
            p = min(1.0, chi2_sf(statistic, dof) * len(FEATURES))
            if best is None or p < best[0]:
                best = (p, statistic, name)
        if best is None:
            return None
        p, statistic, name = best
        index = FEATURES.index(name)
        drifted = p < self._p_value if not self.firing else p < math.sqrt(self._p_value)
        self.firing = drifted
        return DriftResult(drifted, name, p, statistic, {
            "feature": name, "p_value": float(f"{p:.3g}"), "chi2": round(statistic, 1),
            "reference": self.reference_label, "reference_requests": self._reference_n,
            "window_requests": len(self._window),
            "reference_top": _top(self._reference[index], self._reference_n),
            "current_top": _top(current[index], len(self._window))})

    def memory_items(self) -> int:
        """Counts and ring entries held: bounded by the bins and the window size."""
        return sum(len(c) for c in self._reference) + len(self._window)


def _top(counts: dict[str, int], n: int) -> dict[str, float]:
    top = sorted(counts.items(), key=lambda kv: -kv[1])[:4]
    return {k: round(v / n, 3) for k, v in top}


def _chi2_homogeneity(a: dict[str, int], b: dict[str, int]) -> tuple[float, int]:
    """Pearson's chi-square statistic for two samples over the same bins, and its degrees of
    freedom; bins whose expected counts are small are pooled (in key order, so numbered
    bins pool with their neighbours)."""
    na, nb = sum(a.values()), sum(b.values())
    if not na or not nb:
        return 0.0, 0
    total = na + nb
    keys = sorted(set(a) | set(b), key=lambda k: (len(k), k))
    pooled: list[tuple[int, int]] = []
    ca = cb = 0
    for key in keys:
        ca += a.get(key, 0)
        cb += b.get(key, 0)
        column = ca + cb
        if min(column * na / total, column * nb / total) >= _MIN_EXPECTED:
            pooled.append((ca, cb))
            ca = cb = 0
    if ca or cb:
        if pooled:
            pa, pb = pooled.pop()
            pooled.append((pa + ca, pb + cb))
        else:
            pooled.append((ca, cb))
    if len(pooled) < 2:
        return 0.0, 0
    statistic = 0.0
    for ca, cb in pooled:
        column = ca + cb
        ea, eb = column * na / total, column * nb / total
        statistic += (ca - ea) ** 2 / ea + (cb - eb) ** 2 / eb
    return statistic, len(pooled) - 1


def chi2_sf(x: float, dof: int) -> float:
    """P(X >= x) for a chi-square variable with ``dof`` degrees of freedom: the regularized
    upper incomplete gamma function Q(dof/2, x/2) (series below a+1, continued fraction
    above, as in Numerical Recipes)."""
    if x <= 0:
        return 1.0
    a, z = dof / 2.0, x / 2.0
    log_prefix = a * math.log(z) - z - math.lgamma(a)
    if z < a + 1:
        term = total = 1.0 / a
        n = a
        for _ in range(500):
            n += 1
            term *= z / n
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return max(0.0, 1.0 - total * math.exp(log_prefix))
    tiny = 1e-300
    b = z + 1 - a
    c = 1 / tiny
    d = 1 / b
    h = d
    for i in range(1, 500):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        delta = d * c
        h *= delta
        if abs(delta - 1) < 1e-15:
            break
    return min(1.0, math.exp(log_prefix) * h)
