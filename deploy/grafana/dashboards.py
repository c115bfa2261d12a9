"""Ironhold's Grafana dashboard, as code (grafana-foundation-sdk).

    python deploy/grafana/dashboards.py   # writes ironhold.json here and the Helm chart's copy

Every query reads metrics the gateway exposes at /metrics (a test checks each name against a
running gateway, and that the committed JSON is what this script writes).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from grafana_foundation_sdk.builders import dashboard, prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import TimeZoneBrowser
from grafana_foundation_sdk.models.dashboard import DataSourceRef

OUT = Path(__file__).with_name("ironhold.json")
#: The same JSON inside the Helm chart (a chart reads only its own files), for its ConfigMap.
CHART_COPY = Path(__file__).resolve().parent.parent / "helm" / "ironhold" / "files" / \
    "ironhold-dashboard.json"
DS = DataSourceRef(type_val="prometheus", uid="${datasource}")
MODEL = 'gen_ai_request_model=~"$model"'
RATE = "$__rate_interval"


def query(expr: str, legend: str, exemplar: bool = False) -> prometheus.Dataquery:
    q = prometheus.Dataquery().expr(expr).legend_format(legend).datasource(DS)
    return q.exemplar(True) if exemplar else q


def series(title: str, unit: str, *queries: prometheus.Dataquery, width: int = 12,
           description: str = "") -> timeseries.Panel:
    panel = (timeseries.Panel().title(title).unit(unit).datasource(DS).height(8).span(width)
             .description(description))
    for q in queries:
        panel = panel.with_target(q)
    return panel


def quantile(q: float, metric: str, by: str) -> str:
    return (f"histogram_quantile({q}, sum by (le, {by}) "
            f"(rate({metric}_bucket{{{MODEL}}}[{RATE}])))")


def build() -> dashboard.Dashboard:
    requests = f"gen_ai_client_operation_duration_seconds_count{{{MODEL}}}"
    return (
        dashboard.Dashboard("Ironhold gateway")
        .uid("ironhold-gateway")
        .tags(["ironhold", "genai", "generated"])
        .refresh("10s")
        .time("now-1h", "now")
        .timezone(TimeZoneBrowser)
        .with_variable(dashboard.DatasourceVariable("datasource").label("Data source")
                       .type("prometheus"))
        .with_variable(dashboard.QueryVariable("model").label("Model group").datasource(DS)
                       .query("label_values(gen_ai_client_operation_duration_seconds_count, "
                              "gen_ai_request_model)")
                       .multi(True).include_all(True))
        .with_row(dashboard.Row("Traffic"))
        .with_panel(stat.Panel().title("Requests in flight").datasource(DS).height(4).span(6)
                    .with_target(query("sum(ironhold_requests_in_flight)", "in flight")))
        .with_panel(stat.Panel().title("Active signals").datasource(DS).height(4).span(6)
                    .with_target(query("sum(ironhold_signal_active)", "signals")))
        .with_panel(series(
            "Requests per second", "reqps",
            query(f"sum by (gen_ai_request_model) (rate({requests}[{RATE}]))",
                  "{{gen_ai_request_model}}")))
        .with_panel(series(
            "Error ratio", "percentunit",
            query(f'sum by (gen_ai_request_model) (rate(gen_ai_client_operation_duration_seconds'
                  f'_count{{{MODEL},error_type!=""}}[{RATE}])) / sum by (gen_ai_request_model) '
                  f"(rate({requests}[{RATE}]))", "{{gen_ai_request_model}}")))
        .with_row(dashboard.Row("Latency"))
        .with_panel(series(
            "Latency p50 / p99", "s",
            query(quantile(0.5, "gen_ai_client_operation_duration_seconds",
                           "gen_ai_request_model"), "p50 {{gen_ai_request_model}}", True),
            query(quantile(0.99, "gen_ai_client_operation_duration_seconds",
                           "gen_ai_request_model"), "p99 {{gen_ai_request_model}}", True),
            description="Exemplars link to kept traces (telemetry.traces)."))
        .with_panel(series(
            "Time to first token p50 / p95", "s",
            query(quantile(0.5, "gen_ai_server_time_to_first_token_seconds",
                           "gen_ai_request_model"), "p50 {{gen_ai_request_model}}", True),
            query(quantile(0.95, "gen_ai_server_time_to_first_token_seconds",
                           "gen_ai_request_model"), "p95 {{gen_ai_request_model}}", True)))
        .with_row(dashboard.Row("Deployments"))
        .with_panel(series(
            "Upstream attempts by outcome", "reqps",
            query(f'sum by (deployment, outcome) (rate(ironhold_upstream_attempts_total'
                  f'{{model=~"$model"}}[{RATE}]))', "{{deployment}} {{outcome}}")))
        .with_panel(series(
            "Ejected or unhealthy", "short",
            query('max by (deployment) (ironhold_deployment_ejected{model=~"$model"})',
                  "{{deployment}}"),
            query('min by (deployment) (ironhold_deployment_available{model=~"$model"})',
                  "{{deployment}} available")))
        .with_panel(series(
            "Retries, hedges, budget refusals", "reqps",
            query(f'sum by (model) (rate(ironhold_retries_total{{model=~"$model"}}[{RATE}]))',
                  "retries {{model}}"),
            query(f'sum by (model) (rate(ironhold_hedges_sent_total{{model=~"$model"}}'
                  f"[{RATE}]))", "hedges {{model}}"),
            query(f'sum by (model, kind) (rate(ironhold_retry_budget_exhausted_total'
                  f'{{model=~"$model"}}[{RATE}]))', "no budget: {{kind}} {{model}}")))
        .with_panel(series(
            "Shed and fallbacks", "reqps",
            query(f'sum by (model, reason) (rate(ironhold_shed_total{{model=~"$model"}}'
                  f"[{RATE}]))", "shed {{model}} {{reason}}"),
            query(f'sum by (model, fallback) (rate(ironhold_fallbacks_total{{model=~"$model"}}'
                  f"[{RATE}]))", "{{model}} → {{fallback}}")))
        .with_row(dashboard.Row("SLOs and signals"))
        .with_panel(series(
            "SLO error budget left", "percentunit",
            query('ironhold_slo_error_budget_remaining{model=~"$model"}',
                  "{{model}} {{sli}}"),
            description="Share of the SLO window's error budget not yet spent."))
        .with_panel(series(
            "SLO burn rate (1h)", "short",
            query('sum by (model, sli) (rate(ironhold_slo_events_total{result="bad",'
                  'model=~"$model"}[1h])) / sum by (model, sli) (rate(ironhold_slo_events_total'
                  '{model=~"$model"}[1h]))', "{{model}} {{sli}} error ratio")))
        .with_panel(series(
            "Active signals", "short",
            query('sum by (kind, model, deployment) (ironhold_signal_active{model=~"$model"})',
                  "{{kind}} {{model}} {{deployment}}")))
        .with_panel(series(
            "Tokens per second", "short",
            query(f"sum by (gen_ai_request_model, gen_ai_token_type) (rate("
                  f"gen_ai_client_token_usage_sum{{{MODEL}}}[{RATE}]))",
                  "{{gen_ai_request_model}} {{gen_ai_token_type}}")))
        .with_row(dashboard.Row("Changes"))
        .with_panel(series(
            "Rollouts: the candidate's share", "percent",
            query('ironhold_rollout_candidate_percent{model=~"$model"}',
                  "{{model}} {{candidate}} ({{state}})"),
            width=8, description="Each rollout's candidate's share of its group's traffic; "
                                 "a drop to 0 with state rolled_back is a failed gate."))
        .with_panel(series(
            "Shadow pairs", "short",
            query(f'sum by (model, deployment, outcome) (rate(ironhold_shadow_pairs_total'
                  f'{{model=~"$model"}}[{RATE}]))', "{{model}} {{deployment}} {{outcome}}"),
            width=8, description="Shadow copies by how they compared with the client's "
                                 "answer (agreed, differed, error, skipped)."))
        .with_panel(series(
            "Config reloads", "short",
            query(f"sum by (outcome) (increase(ironhold_config_reloads_total[{RATE}]))",
                  "{{outcome}}"),
            query(f"histogram_quantile(0.99, sum by (le) (rate("
                  f"ironhold_config_reload_seconds_bucket[{RATE}])))", "reload p99 (s)"),
            width=8, description="Reloads applied or refused (the running config kept)."))
    )


def render() -> str:
    return json.dumps(json.loads(JSONEncoder(sort_keys=True, indent=2).encode(build().build())),
                      indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    text = render()
    for path in (OUT, CHART_COPY):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}", file=sys.stderr)
