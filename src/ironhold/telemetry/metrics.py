"""Prometheus metrics with the OpenTelemetry GenAI semantic-convention names.

Each ``Metrics`` owns its registry (no module-level state), so several gateways can live in one
process, as they do in tests. Labelled children are cached: ``.labels()`` is the costly part.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

# Bucket boundaries recommended by the OpenTelemetry GenAI semantic conventions.
_DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48,
                     40.96, 81.92)
_TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5,
                 5.0, 7.5, 10.0)
_TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.operation_duration = Histogram(
            "gen_ai_client_operation_duration_seconds",
            "GenAI operation duration, from request to the last byte of the response.",
            ["gen_ai_operation_name", "gen_ai_request_model", "error_type"],
            buckets=_DURATION_BUCKETS, registry=r,
        )
        self.token_usage = Histogram(
            "gen_ai_client_token_usage",
            "Tokens used per operation, by token type (input or output).",
            ["gen_ai_operation_name", "gen_ai_request_model", "gen_ai_token_type"],
            buckets=_TOKEN_BUCKETS, registry=r,
        )
        self.time_to_first_token = Histogram(
            "gen_ai_server_time_to_first_token_seconds",
            "Streams: time from the request to the first chunk from the model.",
            ["gen_ai_operation_name", "gen_ai_request_model"],
            buckets=_TTFT_BUCKETS, registry=r,
        )
        self.requests = Counter(
            "ironhold_requests", "Requests answered, by route and HTTP status.",
            ["route", "status"], registry=r,
        )
        self.upstream_attempts = Counter(
            "ironhold_upstream_attempts",
            "Attempts sent to deployments, by outcome (HTTP status or error code).",
            ["model", "deployment", "outcome"], registry=r,
        )
        self.in_flight = Gauge(
            "ironhold_requests_in_flight", "Requests being served now.", registry=r
        )
        self.deployment_available = Gauge(
            "ironhold_deployment_available",
            "1 if the deployment is available (a managed local server is up), else 0.",
            ["model", "deployment"], registry=r,
        )
        self.retries = Counter(
            "ironhold_retries", "Retries sent after a failed attempt (before the commit point).",
            ["model"], registry=r,
        )
        self.hedges_sent = Counter(
            "ironhold_hedges_sent", "Hedged copies sent to a second deployment.", ["model"],
            registry=r,
        )
        self.hedges_won = Counter(
            "ironhold_hedges_won", "Hedged copies that answered first.", ["model"], registry=r,
        )
        self.budget_exhausted = Counter(
            "ironhold_retry_budget_exhausted",
            "Retries or hedges not sent because the budget was spent.", ["model", "kind"],
            registry=r,
        )
        self.ejections = Counter(
            "ironhold_outlier_ejections",
            "Deployments ejected by outlier detection or health checks, by reason.",
            ["model", "deployment", "reason"], registry=r,
        )
        self.deployment_ejected = Gauge(
            "ironhold_deployment_ejected",
            "1 while the deployment is ejected or fails health checks, else 0.",
            ["model", "deployment"], registry=r,
        )
        self.shed_requests = Counter(
            "ironhold_shed", "Requests refused fast with 429 by a bulkhead or a throttled group.",
            ["model", "reason"], registry=r,
        )
        self.fallbacks = Counter(
            "ironhold_fallbacks", "Requests handed from one model group to a fallback group.",
            ["model", "fallback", "reason"], registry=r,
        )
        self.faults = Counter(
            "ironhold_injected_faults", "Faults injected at the upstream seam.",
            ["deployment", "kind"], registry=r,
        )
        self.signals_active = Gauge(
            "ironhold_signal_active",
            "1 while a signal of this kind is active for the model group (and deployment).",
            ["kind", "model", "deployment"], registry=r,
        )
        self.signals_raised = Counter(
            "ironhold_signals", "Signals raised by the gateway's detectors.",
            ["kind", "model"], registry=r,
        )
        self.slo_budget_left = Gauge(
            "ironhold_slo_error_budget_remaining",
            "Share of the SLO window's error budget not yet spent (negative: overspent).",
            ["model", "sli"], registry=r,
        )
        self.traces_dropped = Counter(
            "ironhold_traces_dropped",
            "Kept traces not made because telemetry.traces.max_per_second was reached.",
            registry=r,
        )
        self.config_reloads = Counter(
            "ironhold_config_reloads",
            "Config reloads tried (SIGHUP, config apply, a watched file), by outcome: "
            "applied or rejected (the running config kept).",
            ["outcome"], registry=r,
        )
        self.config_reload_seconds = Histogram(
            "ironhold_config_reload_seconds",
            "Time from a reload's start to the new config serving (applied reloads).",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0, 30.0), registry=r,
        )
        self.shadow_pairs = Counter(
            "ironhold_shadow_pairs",
            "Shadow copies by how they compared with the client's answer: agreed (the same "
            "text), differed, error (the copy failed) or skipped (too many in flight).",
            ["model", "deployment", "outcome"], registry=r,
        )
        self.tool_calls = Counter(
            "ironhold_mcp_tool_calls",
            "MCP tool calls by server, tool (as the server names it; 'unknown' for a name no "
            "server has) and outcome: ok, tool_error (the tool said isError), denied, "
            "quarantined, rate_limited, blocked (by the guard), invalid, failed.",
            ["server", "tool", "outcome"], registry=r,
        )
        self.tool_call_seconds = Histogram(
            "ironhold_mcp_tool_call_seconds",
            "Time from a tools/call request to its answer, by server.",
            ["server"], buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                                 2.5, 5.0, 10.0, 30.0), registry=r,
        )
        self.tools_quarantined = Gauge(
            "ironhold_mcp_tools_quarantined",
            "MCP tools whose definition changed since it was pinned, hidden and refused until "
            "an admin approves the change.", registry=r,
        )
        self.tool_servers_up = Gauge(
            "ironhold_mcp_server_up",
            "1 while the gateway is connected to an MCP server, else 0.", ["server"],
            registry=r,
        )
        self._counters: dict[tuple[Counter, tuple[str, ...]], Counter] = {}
        self._histograms: dict[tuple[Histogram, tuple[str, ...]], Histogram] = {}

    def _counter(self, metric: Counter, *labels: str) -> Counter:
        key = (metric, labels)
        child = self._counters.get(key)
        if child is None:
            child = self._counters[key] = metric.labels(*labels)
        return child

    def _histogram(self, metric: Histogram, *labels: str) -> Histogram:
        key = (metric, labels)
        child = self._histograms.get(key)
        if child is None:
            child = self._histograms[key] = metric.labels(*labels)
        return child

    def request(self, route: str, status: int) -> None:
        self._counter(self.requests, route, str(status)).inc()

    def tool_call(self, server: str, tool: str, outcome: str, seconds: float) -> None:
        self._counter(self.tool_calls, server, tool, outcome).inc()
        self._histogram(self.tool_call_seconds, server).observe(seconds)

    def upstream_attempt(self, model: str, deployment: str, outcome: str) -> None:
        self._counter(self.upstream_attempts, model, deployment, outcome).inc()

    def operation(self, operation: str, model: str, seconds: float, error_type: str,
                  trace_id: str | None = None) -> None:
        """``trace_id``: the request's kept trace, shown as the bucket's exemplar."""
        self._histogram(self.operation_duration, operation, model, error_type).observe(
            seconds, {"trace_id": trace_id} if trace_id else None)

    def first_token(self, operation: str, model: str, seconds: float,
                    trace_id: str | None = None) -> None:
        self._histogram(self.time_to_first_token, operation, model).observe(
            seconds, {"trace_id": trace_id} if trace_id else None)

    def tokens(self, operation: str, model: str, prompt: int, completion: int) -> None:
        self._histogram(self.token_usage, operation, model, "input").observe(prompt)
        if completion:
            self._histogram(self.token_usage, operation, model, "output").observe(completion)

    def shadow(self, model: str, deployment: str, outcome: str) -> None:
        self._counter(self.shadow_pairs, model, deployment, outcome).inc()

    def config_reloaded(self, outcome: str, seconds: float) -> None:
        self.config_reloads.labels(outcome).inc()
        if outcome == "applied":
            self.config_reload_seconds.observe(seconds)

    def set_available(self, model: str, deployment: str, up: bool) -> None:
        self.deployment_available.labels(model, deployment).set(1 if up else 0)

    def retry(self, model: str) -> None:
        self._counter(self.retries, model).inc()

    def hedge(self, model: str, won: bool = False) -> None:
        self._counter(self.hedges_won if won else self.hedges_sent, model).inc()

    def no_budget(self, model: str, kind: str) -> None:
        self._counter(self.budget_exhausted, model, kind).inc()

    def ejection(self, model: str, deployment: str, reason: str) -> None:
        self._counter(self.ejections, model, deployment, reason).inc()

    def set_ejected(self, model: str, deployment: str, out: bool) -> None:
        self.deployment_ejected.labels(model, deployment).set(1 if out else 0)

    def shed(self, model: str, reason: str) -> None:
        self._counter(self.shed_requests, model, reason).inc()

    def fallback(self, model: str, fallback: str, reason: str) -> None:
        self._counter(self.fallbacks, model, fallback, reason).inc()

    def fault(self, deployment: str, kind: str) -> None:
        self._counter(self.faults, deployment, kind).inc()

    def signal(self, kind: str, model: str, deployment: str, active: bool) -> None:
        self.signals_active.labels(kind, model, deployment).set(1 if active else 0)
        if active:
            self._counter(self.signals_raised, kind, model).inc()

    def watch_slos(self, totals: Callable[[], Iterable[tuple[str, str, int, int]]]) -> None:
        """Expose ``ironhold_slo_events_total`` from the SLO trackers' own counts
        (``(model, sli, good, bad)``), read at scrape time: nothing extra per request."""
        self.registry.register(_SloEvents(totals))

    def watch_rollouts(self, shares: Callable[[], Iterable[tuple[str, str, str, float]]]
                       ) -> None:
        """Expose ``ironhold_rollout_candidate_percent`` from the rollouts' own state
        (``(model, candidate, state, percent)``), read at scrape time."""
        self.registry.register(_RolloutShares(shares))

    def slo_budget(self, model: str, sli: str, left: float | None) -> None:
        if left is not None:
            self.slo_budget_left.labels(model, sli).set(left)

    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """The metrics and their content type: OpenMetrics (with exemplars, the trace ids of
        kept traces) when the scraper accepts it, Prometheus' text format otherwise."""
        encode, content_type = choose_encoder(accept)
        return encode(self.registry), content_type


class _SloEvents(Collector):
    def __init__(self, totals: Callable[[], Iterable[tuple[str, str, int, int]]]):
        self._totals = totals

    def describe(self) -> Iterator[Metric]:
        yield self._family()

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        for model, sli, good, bad in self._totals():
            family.add_metric([model, sli, "good"], good)
            family.add_metric([model, sli, "bad"], bad)
        yield family

    @staticmethod
    def _family() -> CounterMetricFamily:
        return CounterMetricFamily(
            "ironhold_slo_events",
            "Requests counted by a model group's SLIs, good or bad (the SLO rules read these).",
            labels=["model", "sli", "result"])


class _RolloutShares(Collector):
    def __init__(self, shares: Callable[[], Iterable[tuple[str, str, str, float]]]):
        self._shares = shares

    def describe(self) -> Iterator[Metric]:
        yield self._family()

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        for model, candidate, state, percent in self._shares():
            family.add_metric([model, candidate, state], percent)
        yield family

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "ironhold_rollout_candidate_percent",
            "A rollout's candidate's share of its model group's traffic, percent, by state "
            "(progressing, paused, promoted, rolled_back).",
            labels=["model", "candidate", "state"])
