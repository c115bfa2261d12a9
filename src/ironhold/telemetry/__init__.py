"""Metrics (Prometheus, OpenTelemetry GenAI names), JSON logs, and the telemetry stage."""

from ironhold.telemetry.logs import configure_logging
from ironhold.telemetry.metrics import Metrics
from ironhold.telemetry.stage import TelemetryStage

__all__ = ["Metrics", "TelemetryStage", "configure_logging"]
