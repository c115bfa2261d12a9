"""The config schema: pydantic models, strict about unknown keys so typos are caught."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from ironhold.config.changes import RolloutConfig, ShadowConfig
from ironhold.config.durations import Seconds
from ironhold.config.guard import GuardConfig, GuardOverride
from ironhold.config.mcp import McpConfig
from ironhold.config.security import AuditConfig, IdentityConfig, LimitsConfig, PolicyConfig
from ironhold.config.telemetry import SloConfig, TelemetryConfig


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DrainConfig(_Strict):
    """How a SIGTERM stops the gateway without failing a request."""

    #: ``/readyz`` says 503 at once, but new requests are still served this long, so a load
    #: balancer (or Kubernetes' endpoints) notices before the listener closes.
    grace: Seconds = 3.0
    #: Requests and streams in flight may take this long to finish once the listener has
    #: closed; what is left then is cut.
    timeout: Seconds = 30.0


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    #: Largest accepted request body; larger ones get a 413.
    max_body_bytes: int = Field(8 * 1024 * 1024, gt=0)
    #: A connection must deliver a request's whole headers within this long of connecting or
    #: of its previous answer, else it is closed: it bounds slow headers (slowloris) and idle
    #: keep-alive connections alike.
    header_timeout: Seconds = Field(15.0, gt=0)
    #: A request's body must arrive within this long once its headers have; else 408.
    body_timeout: Seconds = Field(30.0, gt=0)
    #: Open client connections at most; more are closed as soon as they are accepted.
    max_connections: int = Field(4096, gt=0)
    #: Who may read ``/metrics`` and ``/readyz``'s per-deployment detail: ``public`` (anyone
    #: who reaches the port: keep it on a private network) or ``admin`` (an admin credential,
    #: e.g. Prometheus' ``authorization`` with a key made with ``--admin``).
    internals: Literal["public", "admin"] = "public"
    drain: DrainConfig = Field(default_factory=DrainConfig)


class StateConfig(_Strict):
    #: ``sqlite:///path`` (relative paths are relative to the config file) or ``postgresql://...``.
    url: str = "sqlite:///./.ironhold/ironhold.db"
    #: ``redis://host:6379/0``: limits, budgets and concurrency shared by every replica.
    redis: str | None = None

    @field_validator("url")
    @classmethod
    def _known_engine(cls, url: str) -> str:
        if not url.startswith(("sqlite://", "postgresql://", "postgresql+psycopg://")):
            raise ValueError("must start with sqlite:/// or postgresql://")
        return url

    @field_validator("redis")
    @classmethod
    def _redis_url(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return url


class AuthConfig(_Strict):
    #: Secret used to hash API keys. If unset, one is generated into the state directory.
    key_secret: SecretStr | None = None
    #: How long a verified key is trusted before the store is asked again (revocation delay).
    cache_ttl: Seconds = 5.0


class LoggingConfig(_Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "text"] = "json"
    #: One log line per request (method, path, status, latency; never prompt or completion text).
    access: bool = True


class TimeoutConfig(_Strict):
    """A request's deadlines. ``total`` covers every attempt, retries and hedges included;
    ``first_token`` bounds the wait for a stream's first chunk (and a stall between chunks).
    A client may ask for shorter ones per request (``x-ironhold-timeout``,
    ``x-ironhold-first-token-timeout``), never longer."""

    connect: Seconds = 5.0
    first_token: Seconds = 60.0
    total: Seconds = 600.0


class RetryConfig(_Strict):
    """Retries happen only before the commit point (the first byte sent to the client)."""

    #: Most attempts one request may make in one model group, the first one and hedges included.
    attempts: int = Field(3, ge=1, le=10)
    #: Retries and hedges together may add at most this share of the group's requests...
    budget_percent: float = Field(20.0, ge=0, le=100)
    #: ...plus this many a second, so a quiet group can still retry.
    min_per_second: float = Field(1.0, ge=0)
    #: Full-jitter exponential backoff between attempts: uniform(0, min(cap, base * 2^n)).
    backoff_base: Seconds = 0.025
    backoff_cap: Seconds = 1.0


class HedgingConfig(_Strict):
    enabled: bool = False
    #: Hedge once a request has waited longer than this percentile of the deployment's recent
    #: time to first byte...
    percentile: float = Field(95.0, gt=0, lt=100)
    #: ...but never sooner than this.
    min_delay: Seconds = 0.01
    #: Hedges may add at most this share of requests (and they also draw on the retry budget).
    max_extra_percent: float = Field(5.0, ge=0, le=100)
    #: Samples a deployment needs before its percentile is trusted.
    min_samples: int = Field(20, ge=1)


class FailureRateConfig(_Strict):
    #: Eject when at least this share of the last ``window``'s attempts failed...
    threshold_percent: float = Field(50.0, gt=0, le=100)
    #: ...and there were at least this many attempts.
    min_requests: int = Field(20, ge=1)
    window: Seconds = 10.0


class HealthCheckConfig(_Strict):
    """Active checks: a GET on each deployment's ``path`` every ``interval``."""

    interval: Seconds = 5.0
    timeout: Seconds = 2.0
    path: str = "/models"
    #: Consecutive failed checks that eject a deployment, and passed ones that re-admit it.
    unhealthy_threshold: int = Field(2, ge=1)
    healthy_threshold: int = Field(1, ge=1)


class OutlierConfig(_Strict):
    enabled: bool = True
    #: Consecutive failures (5xx, connect errors, timeouts) that eject a deployment.
    consecutive_failures: int = Field(5, ge=1)
    failure_rate: FailureRateConfig | None = Field(default_factory=FailureRateConfig)
    #: Ejection time is base_ejection x the number of times it has been ejected, capped.
    base_ejection: Seconds = 30.0
    max_ejection: Seconds = 300.0
    #: At most this share of a group is ejected at once (one deployment always may be).
    max_ejection_percent: float = Field(50.0, ge=0, le=100)
    health_check: HealthCheckConfig | None = None


class AffinityConfig(_Strict):
    """Prefix affinity: requests with the same system prompt go to the same deployment (warm
    KV cache), unless it has more than ``load_factor`` x its fair share of outstanding work."""

    enabled: bool = False
    load_factor: float = Field(1.25, ge=1.0)


class BulkheadConfig(_Strict):
    #: Concurrent requests one API key may have in this group (None: no cap).
    max_concurrent_per_key: int | None = Field(None, gt=0)
    #: When every deployment (or the key) is at its cap, wait at most this long for a slot...
    max_wait: Seconds = 0.1
    #: ...with at most this many requests waiting; then a fast 429 with Retry-After.
    max_waiting: int = Field(64, ge=0)


class RoutingConfig(_Strict):
    balancer: Literal["peak_ewma", "round_robin", "least_outstanding"] = "peak_ewma"
    timeout: TimeoutConfig = Field(default_factory=TimeoutConfig)
    retries: RetryConfig = Field(default_factory=RetryConfig)
    hedging: HedgingConfig = Field(default_factory=HedgingConfig)
    outlier: OutlierConfig = Field(default_factory=OutlierConfig)
    affinity: AffinityConfig = Field(default_factory=AffinityConfig)
    bulkhead: BulkheadConfig = Field(default_factory=BulkheadConfig)


class FallbackOnConfig(_Strict):
    """When a group hands a request to its ``fallbacks``."""

    #: Every attempt failed (or every deployment is throttled or ejected).
    exhausted: bool = True
    #: The model server said the prompt is longer than its context window.
    context_length: bool = True
    #: The model server refused on content grounds (a content filter).
    content_filter: bool = False


FaultKind = Literal["abort", "delay", "slow", "cut", "malformed", "reset", "hang"]


class FaultConfig(_Strict):
    """One injected fault, applied at the upstream seam (see docs/chaos.md)."""

    kind: FaultKind
    #: Share of attempts it hits.
    percent: float = Field(100.0, ge=0, le=100)
    #: abort: the status to answer with (any, 429 included) and an optional Retry-After.
    status: int = Field(503, ge=400, le=599)
    retry_after: Seconds | None = None
    #: delay: before the first byte; slow: between chunks.
    delay: Seconds = 1.0
    #: cut / malformed: after this many chunks of a stream.
    after_chunks: int = Field(1, ge=0)
    #: Only this deployment (by name); default: every deployment it is configured for.
    deployment: str | None = None


class ModelSignatureConfig(_Strict):
    """An OpenSSF model-signing bundle over the model file (``ironhold model sign``), and the
    public key whose private key made it."""

    bundle: Path
    public_key: Path


class LocalModelConfig(_Strict):
    """A GGUF file that Ironhold serves itself with a supervised llama.cpp server. It is
    verified before it serves: against a pinned ``sha256``, a ``signature``, or both."""

    gguf: Path
    sha256: str | None = None
    signature: ModelSignatureConfig | None = None
    ctx_size: int = Field(2048, gt=0)
    threads: int | None = Field(None, gt=0)
    #: llama.cpp's chat template name (e.g. ``gemma``); default: the one in the GGUF file.
    chat_format: str | None = None
    #: Completion tokens for a request that sets no ``max_tokens``: a small model that never
    #: stops would otherwise generate until its context is full.
    default_max_tokens: int = Field(256, ge=1, le=1 << 20)
    #: Extra command-line arguments for ``python -m llama_cpp.server``.
    args: list[str] = Field(default_factory=list)
    startup_timeout: Seconds = 120.0

    @field_validator("sha256")
    @classmethod
    def _hex_digest(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().lower()
        if not re.fullmatch(r"[0-9a-f]{64}", value):
            raise ValueError("must be a 64-character hex SHA-256 digest")
        return value

    @model_validator(mode="after")
    def _verified(self) -> LocalModelConfig:
        if self.sha256 is None and self.signature is None:
            raise ValueError("a local model needs 'sha256' (a pinned digest) or 'signature' "
                             "(a model-signing bundle and public key), or both: an "
                             "unverified file is never served")
        return self


class DeploymentConfig(_Strict):
    """One place a model group can be served from: a remote URL or a local GGUF file."""

    name: str | None = None
    url: str | None = None
    local: LocalModelConfig | None = None
    #: The model name to send upstream (defaults to the group's name).
    model: str | None = None
    api_key: SecretStr | None = None
    weight: float = Field(1.0, gt=0)
    #: Pooled connections kept to this deployment.
    max_connections: int = Field(256, gt=0)
    #: Bulkhead: requests in flight to this deployment at most (None: no cap).
    max_concurrent: int | None = Field(None, gt=0)
    faults: list[FaultConfig] = Field(default_factory=list)
    #: A label for what this deployment serves (``v2``, a model's release): shown in
    #: ``/v1/models``, spans, audit records and the console.
    version: str | None = Field(None, min_length=1, max_length=128, pattern=r"^[\x21-\x7e]+$")

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", url):
            raise ValueError("must be an http:// or https:// URL")
        return url.rstrip("/")

    @model_validator(mode="after")
    def _exactly_one_target(self) -> DeploymentConfig:
        if (self.url is None) == (self.local is None):
            raise ValueError("a deployment needs exactly one of 'url' or 'local'")
        return self


class ModelGroupConfig(_Strict):
    name: str = Field(min_length=1, max_length=256)
    deployments: list[DeploymentConfig] = Field(min_length=1)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    #: Model groups tried in order when this one cannot answer (see ``fallback_on``).
    fallbacks: list[str] = Field(default_factory=list)
    fallback_on: FallbackOnConfig = Field(default_factory=FallbackOnConfig)
    #: Faults injected into every deployment of this group.
    faults: list[FaultConfig] = Field(default_factory=list)
    owned_by: str = "ironhold"
    #: This group's guard scanners, replacing the global ones they name.
    guard: GuardOverride | None = None
    #: Service-level objectives: burn-rate alerts and ``ironhold slo rules``.
    slo: SloConfig | None = None
    #: Copies of a share of requests to a deployment that answers no client (compared).
    shadow: ShadowConfig | None = None
    #: A candidate deployment's share of traffic stepped up while its gates hold.
    rollout: RolloutConfig | None = None

    @model_validator(mode="before")
    @classmethod
    def _moved_keys(cls, data: object) -> object:
        if isinstance(data, dict) and "timeout" in data:
            raise ValueError("'timeout' now lives under 'routing': routing: {timeout: {...}}")
        return data

    @model_validator(mode="after")
    def _unique_deployments(self) -> ModelGroupConfig:
        names = [d.name or f"{self.name}-{i}" for i, d in enumerate(self.deployments)]
        if len(set(names)) != len(names):
            raise ValueError("deployment names must be unique within a group")
        special = {}
        if self.shadow is not None:
            special["shadow.deployment"] = self.shadow.deployment
        if self.rollout is not None:
            special["rollout.candidate"] = self.rollout.candidate
        for key, name in special.items():
            if name not in names:
                raise ValueError(f"{key}: {name!r} is not one of this group's deployments "
                                 f"({', '.join(names)})")
        if len(set(special.values())) < len(special):
            raise ValueError("the shadow deployment cannot also be the rollout's candidate")
        if len(names) - len(special) < 1:
            raise ValueError("the group needs a deployment that is neither the shadow nor the "
                             "rollout's candidate (the stable side)")
        return self


class ChaosConfig(_Strict):
    #: Whether admins may inject faults per request with the ``x-ironhold-fault`` header.
    header: bool = True
    #: Faults injected into every request made with the named API keys.
    keys: dict[str, list[FaultConfig]] = Field(default_factory=dict)


class Config(_Strict):
    server: ServerConfig = Field(default_factory=ServerConfig)
    state: StateConfig = Field(default_factory=StateConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    identity: IdentityConfig = Field(default_factory=IdentityConfig)
    policy: PolicyConfig | None = None
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    audit: AuditConfig = Field(default_factory=AuditConfig)
    guard: GuardConfig = Field(default_factory=GuardConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    models: list[ModelGroupConfig] = Field(default_factory=list)
    chaos: ChaosConfig = Field(default_factory=ChaosConfig)
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)
    #: The MCP tool gateway (``/mcp``).
    mcp: McpConfig = Field(default_factory=McpConfig)
    #: The directory relative paths are resolved against (the config file's); set by the loader.
    base_dir: Path = Path(".")
    #: Where the config came from (its file's path); set by the loader.
    source: str = "<config>"

    @model_validator(mode="after")
    def _unique_names(self) -> Config:
        seen: set[str] = set()
        for group in self.models:
            if group.name in seen:
                raise ValueError(f"model group {group.name!r} is defined twice")
            seen.add(group.name)
        for group in self.models:
            for fallback in group.fallbacks:
                if fallback not in seen:
                    raise ValueError(f"model group {group.name!r} falls back to "
                                     f"{fallback!r}, which is not defined")
                if fallback == group.name:
                    raise ValueError(f"model group {group.name!r} falls back to itself")
        embedding = self.telemetry.signals.embedding_drift
        if embedding is not None and embedding.model not in seen:
            raise ValueError(f"telemetry.signals.embedding_drift.model {embedding.model!r} is "
                             "not a model group")
        sides = [("guard", self.guard)] + [(f"models[{g.name}].guard", g.guard)
                                           for g in self.models if g.guard is not None]
        for where, guard in sides:
            assert guard is not None
            for name, scanner in guard.input.items():
                if scanner.reroute_to is not None and scanner.reroute_to not in seen:
                    raise ValueError(f"{where}.input.{name} reroutes to {scanner.reroute_to!r}, "
                                     "which is not a model group")
        return self

    def group(self, name: str) -> ModelGroupConfig | None:
        return next((g for g in self.models if g.name == name), None)
