"""Measure the injection/jailbreak detector on a labelled JSONL file, as the gateway runs it."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ironhold.guard.injection import InjectionScanner
from ironhold.guard.pii import scan_pii
from ironhold.guard.secrets import scan_secrets
from ironhold.guard.train import load_labelled

__all__ = ["EvalResult", "Prediction", "evaluate"]


@dataclass(frozen=True, slots=True)
class Prediction:
    index: int
    attack: bool
    score: float


@dataclass
class EvalResult:
    n: int
    tp: int
    fp: int
    tn: int
    fn: int
    threshold: float
    #: Time for the injection scanner per text, and for every input scanner together.
    latency_ms: list[float]
    latency_all_ms: list[float]
    by_kind: dict[str, dict[str, float]] = field(default_factory=dict)
    predictions: list[Prediction] = field(default_factory=list)

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def fpr(self) -> float:
        return self.fp / (self.fp + self.tn) if self.fp + self.tn else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "n": self.n, "attacks": self.tp + self.fn, "benign": self.fp + self.tn,
            "tp": self.tp, "fp": self.fp, "tn": self.tn, "fn": self.fn,
            "precision": round(self.precision, 4), "recall": round(self.recall, 4),
            "f1": round(self.f1, 4), "fpr": round(self.fpr, 4), "threshold": self.threshold,
            "latency_ms_p50": round(_quantile(self.latency_ms, 0.5), 3),
            "latency_ms_p99": round(_quantile(self.latency_ms, 0.99), 3),
            "latency_all_scanners_ms_p50": round(_quantile(self.latency_all_ms, 0.5), 3),
            "latency_all_scanners_ms_p99": round(_quantile(self.latency_all_ms, 0.99), 3),
            "by_kind": self.by_kind,
        }


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def evaluate(path: Path, scanner: InjectionScanner,
             progress: Callable[[int, int], None] = lambda done, total: None) -> EvalResult:
    texts, labels, rows = load_labelled(path)
    result = EvalResult(len(texts), 0, 0, 0, 0, scanner.threshold, [], [])
    kinds: dict[str, list[int]] = {}
    for i, (text, label, row) in enumerate(zip(texts, labels, rows, strict=True)):
        start = time.perf_counter()
        score = scanner.score(text).score
        mid = time.perf_counter()
        scan_pii(text)
        scan_secrets(text)
        end = time.perf_counter()
        result.latency_ms.append((mid - start) * 1000)
        result.latency_all_ms.append((end - start) * 1000)
        attack = score >= scanner.threshold
        result.predictions.append(Prediction(i, attack, round(score, 6)))
        if attack and label:
            result.tp += 1
        elif attack:
            result.fp += 1
        elif label:
            result.fn += 1
        else:
            result.tn += 1
        kind = str(row.get("kind") or ("attack" if label else "benign"))
        counts = kinds.setdefault(kind, [0, 0])
        counts[0] += 1
        counts[1] += attack
        if i % 200 == 0:
            progress(i, len(texts))
    progress(len(texts), len(texts))
    result.by_kind = {k: {"n": n, "flagged": flagged, "flag_rate": round(flagged / n, 4)}
                      for k, (n, flagged) in sorted(kinds.items())}
    return result
