"""Prometheus rules for the SLOs in a config: recording rules for each SLI's error ratio over
the alert windows, and the SRE workbook's multiwindow, multi-burn-rate alerts (the same ones
the gateway raises as ``slo_burn`` signals), over ``ironhold_slo_events_total``."""

from __future__ import annotations

from typing import Any

from ironhold.config.schema import Config
from ironhold.telemetry.slo import ALERTS, _span, objectives

__all__ = ["ALERT_NAME", "prometheus_rules", "ratio_rule"]

ALERT_NAME = "IronholdSloBurnRate"
_EVENTS = "ironhold_slo_events_total"


def ratio_rule(window: str) -> str:
    return f"model_sli:ironhold_slo_errors:ratio_rate{window}"


def _windows() -> list[str]:
    seen: list[str] = []
    for alert in ALERTS:
        for seconds in (alert.short, alert.long):
            name = _span(seconds)
            if name not in seen:
                seen.append(name)
    return seen


def prometheus_rules(config: Config) -> dict[str, Any]:
    """The rule groups (``promtool check rules`` accepts them), for every group with an
    ``slo``; empty groups when none has one."""
    recording = [{
        "record": ratio_rule(window),
        "expr": (f'sum by (model, sli) (rate({_EVENTS}{{result="bad"}}[{window}]))\n/\n'
                 f"sum by (model, sli) (rate({_EVENTS}[{window}]))"),
    } for window in _windows()]
    alerts: list[dict[str, Any]] = []
    for group in config.models:
        if group.slo is None:
            continue
        for sli, (objective, threshold) in objectives(group.slo).items():
            budget = round(1 - objective, 10)
            selector = f'{{model="{group.name}",sli="{sli}"}}'
            for severity in ("page", "ticket"):
                chosen = [a for a in ALERTS if a.severity == severity]
                clauses = [
                    f"(\n  {ratio_rule(_span(a.long))}{selector} > ({a.factor:g} * {budget:g})"
                    f"\nand\n  {ratio_rule(_span(a.short))}{selector} > ({a.factor:g} * "
                    f"{budget:g})\n)"
                    for a in chosen]
                what = (f"{objective * 100:g}% of requests without a server error"
                        if threshold is None else
                        f"{objective * 100:g}% of requests within {threshold:g}s"
                        + (" to the first token" if sli == "ttft" else ""))
                alerts.append({
                    "alert": ALERT_NAME,
                    "expr": "\nor\n".join(clauses),
                    "labels": {"severity": severity, "model": group.name, "sli": sli},
                    "annotations": {
                        "summary": f"{group.name}: the {sli} error budget is burning "
                                   f"({severity})",
                        "description": (
                            f"Objective: {what} over {_span(int(group.slo.window))}. "
                            "Windows (long/short, burn factor): " + ", ".join(
                                f"{a.name} at {a.factor:g}x" for a in chosen) + "."),
                    },
                })
    return {"groups": [
        {"name": "ironhold-slo-ratios", "rules": recording},
        {"name": "ironhold-slo-alerts", "rules": alerts},
    ]}
