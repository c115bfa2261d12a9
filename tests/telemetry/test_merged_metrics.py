"""Two workers' expositions merged into one: every family once, each sample labelled with its
worker, and the result parses back with the same values."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from ironhold.api.process_group import merge_expositions
from ironhold.telemetry.metrics import Metrics


def test_two_workers_metrics_merge_into_one_valid_exposition() -> None:
    workers = [Metrics(), Metrics()]
    for index, metrics in enumerate(workers):
        for _ in range(index + 2):
            metrics.operation("chat", "gpt", 0.05, "", None)
        metrics.config_reloaded("applied", 0.01)
        metrics.request("/v1/chat/completions", 200)
    texts = {i: m.exposition("")[0].decode() for i, m in enumerate(workers)}
    merged = merge_expositions(texts)
    names = [line.split()[2] for line in merged.splitlines() if line.startswith("# TYPE")]
    assert len(names) == len(set(names))  # each family once
    families = {f.name: f for f in text_string_to_metric_families(merged)}
    counts = {s.labels["worker"]: s.value
              for s in families["gen_ai_client_operation_duration_seconds"].samples
              if s.name.endswith("_count")}
    assert counts == {"0": 2.0, "1": 3.0}
    reloads = [s for s in families["ironhold_config_reloads"].samples
               if s.name == "ironhold_config_reloads_total"]
    assert sorted(s.labels["worker"] for s in reloads) == ["0", "1"]
    assert all(s.value == 1.0 for s in reloads)
