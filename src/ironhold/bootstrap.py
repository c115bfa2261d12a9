"""The composition root: a ``Config`` in, a wired ``Gateway`` out.

Nothing else constructs stages, stores, transports or clients. Tests call the same root with a
test config, and may plug in their own transports (``transport_factory``: an in-memory
``MockTransport`` instead of HTTP) and clock (a virtual one, so timeouts, hedges and ejections
run in milliseconds). Every resource the gateway opens is closed through one exit stack, in the
reverse order of opening.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ironhold import __version__
from ironhold.audit.auditor import Auditor
from ironhold.audit.log import AuditLog
from ironhold.audit.stage import AuditStage
from ironhold.audit.store import AuditStore
from ironhold.audit.stream import NatsAuditStream
from ironhold.chaos import ChaosStage, FaultTransport
from ironhold.config.schema import Config, DeploymentConfig, ModelGroupConfig
from ironhold.config.version import config_version
from ironhold.core.keyfiles import load_or_create_ed25519
from ironhold.core.pipeline import Handler, Stage, build_pipeline
from ironhold.guard import Guard, GuardStage, InjectionModel
from ironhold.identity.jwks import JwksSource
from ironhold.identity.keys import KeyService, load_key_secret
from ironhold.identity.passports import PassportAuthority
from ironhold.identity.repository import SqlKeyRepository, SqlPassportRepository
from ironhold.identity.stage import Authenticator, IdentityStage
from ironhold.identity.tokens import OidcVerifier
from ironhold.limits.quotas import Pricer, Quotas
from ironhold.limits.redis_store import RedisLimitStore
from ironhold.limits.stage import LimitsStage
from ironhold.limits.store import LimitStore, MemoryLimitStore
from ironhold.policy.authorizer import Authorizer
from ironhold.policy.engine import PolicyEngine
from ironhold.policy.stage import PolicyStage
from ironhold.routing.deployment import Deployment
from ironhold.routing.group import ModelGroup
from ironhold.routing.health import HealthChecker
from ironhold.routing.router import Router
from ironhold.routing.stats import Clock
from ironhold.store.sql import SqlStore, open_durable_engine, open_sql_store, state_dir_for
from ironhold.telemetry.embedding_drift import router_embedder
from ironhold.telemetry.insight import Insight
from ironhold.telemetry.metrics import Metrics
from ironhold.telemetry.signals import SignalBoard
from ironhold.telemetry.stage import TelemetryStage
from ironhold.telemetry.traces import SampledBranch, TracedStage, Tracer, routing
from ironhold.telemetry.webhook import SignalWebhook
from ironhold.upstream.http import HttpTransport
from ironhold.upstream.local import LocalModelServer
from ironhold.upstream.transport import Transport

log = logging.getLogger("ironhold")

#: Makes the transport for one deployment: its base URL (for a managed local model, its
#: server's) and its config.
TransportFactory = Callable[[str, DeploymentConfig], Transport]


def http_transport(base_url: str, dc: DeploymentConfig) -> Transport:
    """The default: pooled keep-alive HTTP."""
    if dc.local is not None:
        # llama-cpp-python's server answers 400 to an X-Request-ID that is not a UUID.
        return HttpTransport(base_url, max_connections=dc.max_connections,
                             uuid_request_ids_only=True)
    api_key = dc.api_key.get_secret_value() if dc.api_key else None
    return HttpTransport(base_url, api_key, dc.max_connections)


@dataclass
class Gateway:
    """Everything a running gateway holds; ``api.create_app`` puts HTTP in front of it."""

    config: Config
    store: SqlStore
    keys: KeyService
    metrics: Metrics
    #: The services the stages and the routes share.
    authenticator: Authenticator
    authorizer: Authorizer | None
    quotas: Quotas
    pricer: Pricer
    router: Router
    handle: Handler
    audit: Auditor | None = None
    audit_stream: NatsAuditStream | None = None
    tracer: Tracer | None = None
    signals: SignalBoard | None = None
    insight: Insight | None = None
    webhook: SignalWebhook | None = None
    local_servers: list[LocalModelServer] = field(default_factory=list)
    health_checkers: list[HealthChecker] = field(default_factory=list)
    #: Closes everything the gateway opened, last opened first.
    resources: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)
    started: bool = False
    #: The config's version (SHA-256 of its canonical form) and when it was built into this.
    version: str = ""
    loaded_at: float = field(default_factory=time.time)

    async def start(self) -> None:
        """Start managed local model servers (verifying their files first). If one fails, the
        others are cancelled and stopped, so no child process outlives a failed start."""
        try:
            async with asyncio.TaskGroup() as group:
                for server in self.local_servers:
                    group.create_task(server.start())
        except BaseExceptionGroup as failed:
            await asyncio.gather(*(s.stop() for s in self.local_servers), return_exceptions=True)
            first = failed.exceptions[0]
            raise first from None
        if self.audit is not None:
            await self.audit.log.start()
        if self.audit_stream is not None:
            await self.audit_stream.start()
        for checker in self.health_checkers:
            checker.start()
        if self.insight is not None:
            self.insight.start()
        if self.webhook is not None:
            self.webhook.start()
        self.started = True

    async def close(self) -> None:
        await self.resources.aclose()

    def ready(self) -> bool:
        """Started, and at least one deployment is up, not ejected, passing health checks."""
        return self.started and any(
            d.healthy for g in self.router.groups.values() for d in g.deployments
        )


def key_service(config: Config, store: SqlStore) -> KeyService:
    configured = config.auth.key_secret.get_secret_value() if config.auth.key_secret else None
    return KeyService(SqlKeyRepository(store), load_key_secret(configured, store.state_dir),
                      config.auth.cache_ttl)


@contextlib.contextmanager
def open_identity(config: Config) -> Iterator[Authenticator]:
    """Keys and passports alone, for the CLI's ``keys`` commands and the demo; the state
    store is closed on the way out."""
    store = open_sql_store(config.state.url, config.base_dir)
    try:
        yield build_authenticator(config, store, key_service(config, store))
    finally:
        store.close()


def build_authenticator(config: Config, store: SqlStore, keys: KeyService) -> Authenticator:
    """Keys, passports and (if configured) the OIDC provider's tokens."""
    passports = None
    if config.identity.passports.enabled:
        key_file = config.identity.passports.signing_key
        path = (config.base_dir / key_file.file if key_file is not None
                else store.state_dir / "passport-ed25519.pem")
        signing_key = load_or_create_ed25519(path, "identity.passports.signing_key")
        passports = PassportAuthority(config.identity.passports, signing_key,
                                      SqlPassportRepository(store), config.auth.cache_ttl)
    oidc = None
    if config.identity.jwt is not None:
        jwks = JwksSource(config.identity.jwt.jwks, config.base_dir)
        jwks.load_now()
        oidc = OidcVerifier(config.identity.jwt, jwks)
    return Authenticator(keys, passports, oidc)


def open_audit_store(config: Config, store: SqlStore) -> AuditStore:
    """The audit tables, on their own connections (fsync on every commit on SQLite)."""
    return AuditStore(open_durable_engine(store, config.audit.fsync))


def audit_signing_key_path(config: Config) -> Path:
    key_file = config.audit.signing_key
    return (config.base_dir / key_file.file if key_file is not None
            else state_dir_for(config.state.url, config.base_dir) / "audit-ed25519.pem")


def build_audit(config: Config, store: SqlStore,
                pricer: Pricer) -> tuple[Auditor, NatsAuditStream | None]:
    audit = config.audit
    key = load_or_create_ed25519(audit_signing_key_path(config), "audit.signing_key")
    stream = NatsAuditStream(audit.nats, audit.origin) if audit.nats is not None else None
    log_ = AuditLog(open_audit_store(config, store), key, audit.origin,
                    audit.checkpoint_interval, audit.max_batch, stream)
    return Auditor(log_, audit.on_store_error, audit.content, pricer.answer), stream


def build_tracer(config: Config, metrics: Metrics, version: str) -> Tracer | None:
    traces = config.telemetry.traces
    if not traces.enabled:
        return None
    return Tracer(traces, version, __version__, dropped=metrics.traces_dropped.inc)


def build_insight(config: Config, metrics: Metrics, audit: Auditor | None,
                  resources: contextlib.AsyncExitStack, router: Router,
                  ) -> tuple[SignalBoard, Insight | None, SignalWebhook | None]:
    """The signal board, the detectors that raise signals on it, and where signals go (the
    audit log, a webhook). Stopped before the audit log closes."""
    signals = config.telemetry.signals
    board = SignalBoard(metrics, signals.keep_ended)
    if not signals.enabled:
        return board, None, None
    embedding = signals.embedding_drift
    insight = Insight(config, metrics, board, embed=router_embedder(router, embedding.model)
                      if embedding is not None else None)
    resources.push_async_callback(_quietly, insight.stop)
    if audit is not None:
        board.on_change(lambda signal: audit.record_signal(signal.as_json()))
    webhook = None
    if signals.webhook is not None:
        webhook = SignalWebhook(signals.webhook)
        board.on_change(webhook)
        resources.push_async_callback(_quietly, webhook.stop)
    return board, insight, webhook


def build_guard(config: Config) -> GuardStage:
    overrides = {g.name: g.guard for g in config.models if g.guard is not None}
    return GuardStage(Guard(config.guard, overrides, InjectionModel.load()))


def build_gateway(config: Config, log_dir: Path | None = None, *,
                  transport_factory: TransportFactory = http_transport,
                  clock: Clock = time.monotonic) -> Gateway:
    resources = contextlib.AsyncExitStack()
    state = open_sql_store(config.state.url, config.base_dir)
    resources.push_async_callback(_quietly, asyncio.to_thread, state.close)
    keys = key_service(config, state)
    authenticator = build_authenticator(config, state, keys)
    if authenticator.oidc is not None:
        resources.push_async_callback(_quietly, authenticator.oidc.jwks.close)
    metrics = Metrics()
    local_servers: list[LocalModelServer] = []
    groups: dict[str, ModelGroup] = {}
    checkers: list[HealthChecker] = []
    for group_config in config.models:
        deployments = [
            _build_deployment(config, group_config, i, dc, metrics, local_servers, log_dir,
                              transport_factory, resources)
            for i, dc in enumerate(group_config.deployments)
        ]
        group = groups[group_config.name] = ModelGroup(
            name=group_config.name,
            deployments=deployments,
            policy=group_config.routing,
            metrics=metrics,
            fallbacks=list(group_config.fallbacks),
            fallback_on=group_config.fallback_on,
            owned_by=group_config.owned_by,
            clock=clock,
        )
        health_check = group_config.routing.outlier.health_check
        if health_check is not None:
            checker = HealthChecker(group, health_check)
            resources.push_async_callback(_quietly, checker.stop)
            checkers.append(checker)
    router = Router(groups, metrics, clock=clock)
    # The services, shared by the stages and the routes outside the model path.
    limit_store: LimitStore = (RedisLimitStore(config.state.redis) if config.state.redis
                               else MemoryLimitStore())
    resources.push_async_callback(_quietly, limit_store.close)
    quotas = Quotas(limit_store, config.limits)
    pricer = Pricer(config.limits.prices)
    authorizer = None
    if config.policy is not None:
        authorizer = Authorizer(PolicyEngine.load(config.policy.files, config.base_dir),
                                quotas.remaining_budget_cents)
    version = config_version(config)
    tracer = build_tracer(config, metrics, version)
    if tracer is not None:
        resources.push_async_callback(_quietly, asyncio.to_thread, tracer.close)
    audit, audit_stream = (build_audit(config, state, pricer) if config.audit.enabled
                           else (None, None))
    if audit_stream is not None:  # closed after the log, which may still publish to it
        resources.push_async_callback(_quietly, audit_stream.close)
    if audit is not None:
        resources.push_async_callback(_quietly, asyncio.to_thread, audit.log.store.close)
        resources.push_async_callback(_quietly, audit.log.close)
    board, insight, webhook = build_insight(config, metrics, audit, resources, router)
    stages: list[Stage] = [TelemetryStage(metrics, frozenset(groups),
                                          access_log=config.logging.access, tracer=tracer,
                                          insight=insight)]
    if audit is not None:
        stages.append(AuditStage(audit))
    decisions: list[tuple[str, Stage]] = [("identity", IdentityStage(authenticator))]
    if authorizer is not None:
        decisions.append(("policy", PolicyStage(authorizer)))
    decisions.append(("limits", LimitsStage(quotas, pricer)))
    if config.guard.enabled:
        decisions.append(("guard", build_guard(config)))
    decisions.append(("chaos", ChaosStage(config.chaos.header, config.chaos.keys, authorizer)))
    decided: Handler = build_pipeline([stage for _, stage in decisions], router)
    if tracer is not None:
        # A sampled request takes the same stages, each wrapped to record where it began (its
        # span's events); the others take them bare, paying nothing for it.
        marked = build_pipeline([*(TracedStage(name, stage) for name, stage in decisions),
                                 TracedStage("route", routing)], router)
        stages.append(SampledBranch(marked))
    return Gateway(
        config=config,
        store=state,
        keys=keys,
        metrics=metrics,
        authenticator=authenticator,
        authorizer=authorizer,
        quotas=quotas,
        pricer=pricer,
        router=router,
        handle=build_pipeline(stages, decided),
        audit=audit,
        audit_stream=audit_stream,
        tracer=tracer,
        signals=board,
        insight=insight,
        webhook=webhook,
        local_servers=local_servers,
        health_checkers=checkers,
        version=version,
        resources=resources,
    )


def _build_deployment(
    config: Config,
    group: ModelGroupConfig,
    index: int,
    dc: DeploymentConfig,
    metrics: Metrics,
    local_servers: list[LocalModelServer],
    log_dir: Path | None,
    transport_factory: TransportFactory,
    resources: contextlib.AsyncExitStack,
) -> Deployment:
    name = dc.name or f"{group.name}-{index}"
    faults = [*group.faults, *dc.faults]
    server = None
    if dc.local is not None:
        server = LocalModelServer(name, dc.local, config.base_dir, log_dir)
        base_url = server.base_url
    else:
        assert dc.url is not None
        base_url = dc.url
    transport = transport_factory(base_url, dc)
    resources.push_async_callback(_quietly, transport.close)
    deployment = Deployment(
        name=name, group=group.name, upstream_model=dc.model or group.name,
        transport=FaultTransport(transport, name, faults, metrics),
        weight=dc.weight, max_concurrent=dc.max_concurrent,
        available=server is None,
        digest=f"sha256:{dc.local.sha256}" if dc.local is not None else None,
        default_max_tokens=dc.local.default_max_tokens if dc.local is not None else None)
    metrics.set_available(group.name, name, server is None)
    if server is not None:
        def on_availability(up: bool) -> None:
            deployment.available = up
            metrics.set_available(group.name, name, up)

        server.on_availability = on_availability
        # Stopped before its transport is closed (the stack unwinds last-in first).
        resources.push_async_callback(_quietly, server.stop)
        local_servers.append(server)
    return deployment


async def _quietly(close: Callable[..., Awaitable[object]], *args: object) -> None:
    """Run one closer; a failure is logged, and the others still run."""
    try:
        await close(*args)
    except Exception:
        log.exception("closing a resource failed")
