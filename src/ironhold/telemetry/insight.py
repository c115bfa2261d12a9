"""Insight: every ended request, watched. One object per gateway holds the detectors per model
group and deployment, the SLO trackers, drift, the recent requests the console lists, and the
signal board; the telemetry stage hands it each ``CallOutcome`` (cheap: counters and sketch
updates), and its own task judges everything every ``_TICK`` seconds, off the request path.

    latency_spike   ttft / latency of a group or deployment SpikeDetector
    error_spike     server faults of a group or deployment RateBank
    prompt_failure  empty answers, refusals, truncations,  RateBank, one subject each
                    guard blocks, policy denials
    drift           prompts and answers of a group         DriftDetector; with an
                    (and what prompts mean)                embeddings group, EmbeddingDrift
    slo_burn        availability / ttft / latency budgets  SloTracker
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from ironhold.config.schema import Config
from ironhold.config.telemetry import SignalsConfig
from ironhold.core.tasks import Background
from ironhold.telemetry.detectors import RateBank, RateSubject, SpikeDetector, Verdict
from ironhold.telemetry.drift import DriftDetector, features_of
from ironhold.telemetry.embedding_drift import Embed, Embedder, EmbeddingDrift, mmd_test, sample
from ironhold.telemetry.live import LiveStats
from ironhold.telemetry.metrics import Metrics
from ironhold.telemetry.outcome import CallOutcome, Fault, last_text
from ironhold.telemetry.signals import SignalBoard, SignalKind, rfc3339
from ironhold.telemetry.slo import SloTracker

__all__ = ["Insight", "Tallies"]

log = logging.getLogger("ironhold.signals")

#: Seconds between judgements.
_TICK = 2.0
#: Requests the console's list keeps.
_RECENT = 200
#: What the group's rate bank counts, in this order (``error_spike`` for the first, a
#: ``prompt_failure`` for the rest).
_ERRORS, _EMPTY, _REFUSALS, _TRUNCATIONS, _GUARD_BLOCKS, _POLICY_DENIALS = range(6)
_GROUP_RATES = (
    RateSubject("errors", floor=0.01, cold_start=True),
    RateSubject("empty_answers"),
    RateSubject("refusals"),
    RateSubject("truncations"),
    RateSubject("guard_blocks"),
    RateSubject("policy_denials"),
)
_DEPLOYMENT_RATES = (RateSubject("errors", floor=0.01, cold_start=True),)


class Tallies:
    """Counts since start for the console: guard blocks by category, policy denials, limit
    refusals and spend by tenant. Tenants are admin-made names; past ``_MAX_KEYS`` of them the
    rest are counted as ``_other``."""

    _MAX_KEYS = 1000

    def __init__(self) -> None:
        self.guard_blocks: dict[str, int] = {}
        self.policy_denials = 0
        self.limit_refusals: dict[str, int] = {}
        self.spend_micros: dict[str, int] = {}

    def add(self, o: CallOutcome) -> None:
        if o.guard_blocked is not None:
            _bump(self.guard_blocks, o.guard_blocked, 1, self._MAX_KEYS)
        if o.policy_denied:
            self.policy_denials += 1
        tenant = o.tenant or o.principal or "anonymous"
        if o.limit_refused is not None:
            _bump(self.limit_refusals, tenant, 1, self._MAX_KEYS)
        if o.cost_micros:
            _bump(self.spend_micros, tenant, o.cost_micros, self._MAX_KEYS)


def _bump(counts: dict[str, int], key: str, by: int, cap: int) -> None:
    if key not in counts and len(counts) >= cap:
        key = "_other"
    counts[key] = counts.get(key, 0) + by


class _Group:
    """A model group's detectors."""

    def __init__(self, name: str, deployments: list[str], signals: SignalsConfig,
                 tracker: SloTracker | None):
        w, b, m = signals.spike_window, signals.baseline, signals.min_samples
        self.name = name
        self.rates = RateBank(_GROUP_RATES, w, b, m)
        #: The group as a whole (a spike on every deployment at once: the model, the prompts).
        self.ttft = SpikeDetector(w, b, signals.spike_factor, m)
        self.latency = SpikeDetector(w, b, signals.spike_factor, m)
        self.deployments = {d: _Deployment(signals) for d in deployments}
        self.drift = DriftDetector(signals.drift_reference, signals.drift_window,
                                   signals.drift_p_value)
        self.slo = tracker
        #: The SLIs as last judged, for the console.
        self.slo_view: list[dict[str, object]] | None = None


class _Deployment:
    def __init__(self, signals: SignalsConfig):
        w, b, m, f = (signals.spike_window, signals.baseline, signals.min_samples,
                      signals.spike_factor)
        self.ttft = SpikeDetector(w, b, f, m)
        self.latency = SpikeDetector(w, b, f, m)
        self.rates = RateBank(_DEPLOYMENT_RATES, w, b, m)


class Insight:
    def __init__(self, config: Config, metrics: Metrics, board: SignalBoard,
                 clock: Callable[[], float] = time.time, embed: Embed | None = None):
        self.config = config.telemetry.signals
        self.board = board
        self._metrics = metrics
        self._clock = clock
        self.groups: dict[str, _Group] = {}
        #: Embedding drift per group (not the embedding group's own), when configured.
        self.embedding: dict[str, EmbeddingDrift] = {}
        self._embedding_config = self.config.embedding_drift if embed is not None else None
        self.reconfigure(config)
        metrics.watch_slos(self._slo_totals)
        self.recent: deque[CallOutcome] = deque(maxlen=_RECENT)
        self.live = LiveStats()
        self.tallies = Tallies()
        self.embedder: Embedder | None = None
        self._testing: set[str] = set()
        self._rng = np.random.default_rng()
        if self._embedding_config is not None and embed is not None:
            self.embedder = Embedder(embed, self._embedded)
        self._judge = Background(self._run, "signals")

    def reconfigure(self, config: Config) -> None:
        """Follow a reloaded config's model groups: a group or deployment that stays keeps
        its detectors, and a group keeps its SLO record while its objectives stay the same;
        new ones start cold, removed ones are dropped."""
        groups: dict[str, _Group] = {}
        for g in config.models:
            names = [d.name or f"{g.name}-{i}" for i, d in enumerate(g.deployments)]
            group = self.groups.get(g.name)
            if group is None:
                group = _Group(g.name, names, self.config, None)
            else:
                group.deployments = {n: group.deployments.get(n) or _Deployment(self.config)
                                     for n in names}
            if g.slo is None:
                group.slo = None
            elif group.slo is None or group.slo.slo != g.slo:
                group.slo = SloTracker(g.slo)
            groups[g.name] = group
        self.groups = groups
        e = self._embedding_config
        if e is not None:
            self.embedding = {name: self.embedding.get(name) or EmbeddingDrift(e.reference,
                                                                                e.window)
                              for name in groups if name != e.model}

    # -- on the request path: counting only ---------------------------------------------------

    def observe(self, o: CallOutcome, body: dict[str, Any] | None = None) -> None:
        self.recent.append(o)
        if (self.embedder is not None and o.facts is not None and o.model in self.embedding
                and body is not None):
            e = self._embedding_config
            assert e is not None
            if sample(e.sample_ratio):
                text = last_text(body)[:e.max_chars]
                if text:
                    self.embedder.offer(o.model, text)
        self.tallies.add(o)
        group = self.groups.get(o.model)
        if group is None:
            return
        now = o.at
        server_fault = o.fault == Fault.SERVER
        self.live.add(o.model, o.deployment, o.latency, o.ttft, server_fault, now)
        events = [_ERRORS] if server_fault else []
        facts = o.facts
        if facts is not None:
            if facts.empty and not o.fault:
                events.append(_EMPTY)
            if facts.refused:
                events.append(_REFUSALS)
            if facts.truncated:
                events.append(_TRUNCATIONS)
        if o.guard_blocked is not None:
            events.append(_GUARD_BLOCKS)
        if o.policy_denied:
            events.append(_POLICY_DENIALS)
        group.rates.add(now, *events)
        if not o.fault and o.deployment is not None:
            group.latency.add(o.latency, now)
            if o.ttft is not None:
                group.ttft.add(o.ttft, now)
        deployment = group.deployments.get(o.deployment) if o.deployment else None
        if deployment is not None:
            if server_fault:
                deployment.rates.add(now, _ERRORS)
            else:
                deployment.rates.add(now)
                if not o.fault:
                    deployment.latency.add(o.latency, now)
                    if o.ttft is not None:
                        deployment.ttft.add(o.ttft, now)
        if group.slo is not None and o.outcome != "client_closed" and o.fault != Fault.CLIENT:
            group.slo.record(now, server_fault, o.ttft, o.latency)
        features = features_of(o)
        if features is not None:
            group.drift.add(features)

    def _slo_totals(self) -> list[tuple[str, str, int, int]]:
        return [(name, sli, good, bad) for name, group in self.groups.items()
                if group.slo is not None for sli, (good, bad) in group.slo.totals.items()]

    # -- off it: judging ----------------------------------------------------------------------

    def judge(self, now: float | None = None) -> None:
        """Judge every detector once and raise or end signals."""
        now = self._clock() if now is None else now
        for group in self.groups.values():
            for subject, verdict in zip(_GROUP_RATES, group.rates.judge(now), strict=True):
                kind: SignalKind = "error_spike" if subject.name == "errors" else "prompt_failure"
                self._settle(kind, group.name, None, subject.name, verdict)
            self._settle("latency_spike", group.name, None, "ttft", group.ttft.judge(now))
            self._settle("latency_spike", group.name, None, "latency", group.latency.judge(now))
            for name, d in group.deployments.items():
                self._settle("latency_spike", group.name, name, "ttft", d.ttft.judge(now))
                self._settle("latency_spike", group.name, name, "latency",
                             d.latency.judge(now))
                [errors] = d.rates.judge(now)
                self._settle("error_spike", group.name, name, "errors", errors)
            drift = group.drift.judge()
            if drift is not None:
                self._settle("drift", group.name, None, "prompts_and_answers",
                             Verdict(drift.drifted, drift.evidence))
            if group.slo is not None:
                group.slo_view = []
                for burn in group.slo.burns(now):
                    group.slo_view.append({
                        "sli": burn.sli, "objective": burn.objective,
                        "budget_left": burn.budget_left, "burn_rates": burn.burn,
                        "firing": [a.name for a in burn.firing]})
                    firing = burn.firing
                    self._settle("slo_burn", group.name, None, burn.sli, Verdict(
                        bool(firing), {
                            "objective": burn.objective,
                            "severity": firing[0].severity if firing else None,
                            "alerts": [a.name for a in firing],
                            "burn_rates": burn.burn,
                            "budget_left": (round(burn.budget_left, 4)
                                            if burn.budget_left is not None else None)}))
                    self._metrics.slo_budget(group.name, burn.sli, burn.budget_left)

    def _settle(self, kind: SignalKind, model: str, deployment: str | None, subject: str,
                verdict: Verdict | None) -> None:
        if verdict is None:
            return
        if verdict.firing:
            self.board.raise_(kind, model, deployment, subject, verdict.evidence,
                              since=verdict.onset)
        else:
            self.board.clear(kind, model, deployment, subject)

    def _embedded(self, group: str, vector: list[float]) -> None:
        drift = self.embedding.get(group)
        if drift is not None:
            drift.add(vector)

    async def judge_embeddings(self) -> None:
        """Test each group whose window has new vectors (in a worker thread, one at a time)."""
        e = self._embedding_config
        if e is None:
            return
        for name, drift in self.embedding.items():
            if not drift.ready() or name in self._testing:
                continue
            drift.fresh = 0
            reference, window = np.asarray(drift.reference), np.asarray(list(drift.window))
            self._testing.add(name)
            try:
                result = await asyncio.to_thread(mmd_test, reference, window, e.permutations,
                                                 self._rng)
            finally:
                self._testing.discard(name)
            # Hysteresis: once drifting, it ends only when the test is far from significant.
            holds = result.p_value < (e.p_value if not drift.firing else max(e.p_value, 0.05))
            drift.firing = holds
            self._settle("drift", name, None, "embeddings", Verdict(holds, {
                "test": "mmd_permutation", "mmd2": round(result.mmd2, 6),
                "p_value": float(f"{result.p_value:.3g}"), "permutations": e.permutations,
                "reference_prompts": len(reference), "window_prompts": len(window),
                "embedded_by": e.model}))

    def reset_drift(self, model: str, label: str | None = None) -> bool:
        group = self.groups.get(model)
        if group is None:
            return False
        if model in self.embedding:
            self.embedding[model].reset()
            self.board.clear("drift", model, None, "embeddings")
        group.drift.reset(label or f"reset at {rfc3339(time.time())}")
        self.board.clear("drift", model, None, "prompts_and_answers")
        return True

    # -- its task -----------------------------------------------------------------------------

    def start(self) -> None:
        self._judge.start()
        if self.embedder is not None:
            self.embedder.start()

    async def stop(self) -> None:
        if self.embedder is not None:
            await self.embedder.stop()
        await self._judge.stop()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(_TICK)
            try:
                self.judge()
                await self.judge_embeddings()
            except Exception:
                log.exception("judging the signals failed")
