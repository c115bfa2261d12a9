"""The config of what the gateway shows about itself: traces, service-level objectives and
signals. Part of the one config schema (``config.schema.Config``)."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ironhold.config.durations import Seconds

__all__ = ["EmbeddingDriftConfig", "SignalsConfig", "SloConfig", "TelemetryConfig",
           "TracesConfig", "WebhookConfig"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _http_url(url: str | None) -> str | None:
    if url is not None and not re.fullmatch(r"https?://[^\s/]+(/\S*)?", url):
        raise ValueError("must be an http:// or https:// URL")
    return url.rstrip("/") if url is not None else None


class TracesConfig(_Strict):
    """OpenTelemetry traces over OTLP/HTTP. Without an endpoint nothing is traced (and nothing
    is spent on it)."""

    #: The collector's base URL; ``/v1/traces`` is appended, as OTLP/HTTP exporters do.
    otlp_endpoint: str | None = None
    #: Share of requests traced when the client sent no sampled ``traceparent`` (a client's
    #: sampling decision is followed: parent-based).
    sample_ratio: float = Field(0.05, ge=0, le=1)
    #: Requests slower than this are kept whatever the sampling said...
    keep_slower_than: Seconds = 5.0
    #: ...and so is every request that failed.
    keep_errors: bool = True
    #: Kept traces made per second at most (null: no cap). Making and exporting a trace costs
    #: ~0.15 ms of CPU, so an error storm, or clients that mark every request sampled, could
    #: otherwise spend the gateway's core on spans; traces over the cap are counted
    #: (``ironhold_traces_dropped_total``), not made.
    max_per_second: float | None = Field(200.0, gt=0)
    #: ``service.name`` of the gateway's spans.
    service_name: str = Field("ironhold", min_length=1, max_length=128)

    @field_validator("otlp_endpoint")
    @classmethod
    def _endpoint(cls, url: str | None) -> str | None:
        return _http_url(url)

    @property
    def enabled(self) -> bool:
        return self.otlp_endpoint is not None

    @property
    def traces_url(self) -> str:
        assert self.otlp_endpoint is not None
        return f"{self.otlp_endpoint}/v1/traces"


class SloConfig(_Strict):
    """A model group's service-level objectives, over a rolling ``window``.

    ``availability``: the percentage of requests answered without a gateway or model-server
    error (a client's own mistakes, 4xx, do not count against it). ``ttft_p95``: 95% of
    streams have their first token within this long. ``latency_p99``: 99% of requests are
    complete within this long."""

    availability: float = Field(99.9, gt=0, lt=100)
    ttft_p95: Seconds | None = None
    latency_p99: Seconds | None = None
    window: Seconds = 30 * 86400.0

    @model_validator(mode="after")
    def _window_long_enough(self) -> SloConfig:
        if self.window < 3 * 86400:
            raise ValueError("window must be at least 3d (the slowest burn-rate alert looks "
                             "back 3 days)")
        return self


class WebhookConfig(_Strict):
    """Signals are POSTed here as JSON when they start and when they end."""

    url: str
    #: Seconds a POST may take; one that fails is logged, never retried.
    timeout: Seconds = 5.0

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        checked = _http_url(url)
        assert checked is not None
        return checked


class EmbeddingDriftConfig(_Strict):
    """Drift in what prompts mean: a sample of prompts embedded by ``model`` (a model group
    with an embeddings deployment; the managed local model can embed) and compared, reference
    against window, with an MMD permutation test."""

    model: str = Field(min_length=1)
    #: Share of answered chat and completion requests whose prompt is embedded.
    sample_ratio: float = Field(0.1, gt=0, le=1)
    reference: int = Field(200, ge=20, le=5000)
    window: int = Field(100, ge=20, le=5000)
    permutations: int = Field(2000, ge=50, le=10_000)
    p_value: float = Field(1e-3, gt=0, lt=0.5)
    #: A prompt's last message is cut to this many characters before it is embedded.
    max_chars: int = Field(2000, ge=16, le=100_000)

    @model_validator(mode="after")
    def _reachable(self) -> EmbeddingDriftConfig:
        # A permutation test's p-value is at least 1 / (permutations + 1).
        if (self.permutations + 1) * self.p_value < 2:
            raise ValueError(f"p_value {self.p_value:g} needs at least "
                             f"{int(2 / self.p_value)} permutations (a permutation test's "
                             "p-value is never below 1 / (permutations + 1))")
        return self


class SignalsConfig(_Strict):
    """Online detectors: latency and time-to-first-token spikes, rising errors and prompt
    failures, drift, and SLO burn."""

    enabled: bool = True
    #: The recent window a spike is judged on...
    spike_window: Seconds = 15.0
    #: ...against a baseline of this long before it.
    baseline: Seconds = 600.0
    #: A spike: the recent median at least this many times the baseline's.
    spike_factor: float = Field(3.0, gt=1)
    #: Requests a window needs before it is judged.
    min_samples: int = Field(20, ge=5, le=100_000)
    #: Drift: requests in the reference window and in the current one.
    drift_reference: int = Field(1000, ge=100, le=100_000)
    drift_window: int = Field(300, ge=50, le=100_000)
    #: Drift is signalled when a test's p-value (corrected for the number of features) is
    #: below this.
    drift_p_value: float = Field(1e-4, gt=0, lt=0.5)
    #: Signals that ended are listed at ``/admin/signals`` this long.
    keep_ended: Seconds = 86400.0
    webhook: WebhookConfig | None = None
    embedding_drift: EmbeddingDriftConfig | None = None


class TelemetryConfig(_Strict):
    traces: TracesConfig = Field(default_factory=TracesConfig)
    signals: SignalsConfig = Field(default_factory=SignalsConfig)
