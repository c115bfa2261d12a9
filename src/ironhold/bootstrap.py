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
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from ironhold import __version__
from ironhold.audit.auditor import Auditor
from ironhold.audit.log import AuditLog
from ironhold.audit.record import ChangeRecord
from ironhold.audit.stage import AuditStage
from ironhold.audit.store import AuditStore
from ironhold.audit.stream import NatsAuditStream
from ironhold.build_groups import TransportFactory, build_groups, http_transport
from ironhold.chaos import ChaosStage
from ironhold.config.schema import Config
from ironhold.config.version import config_version
from ironhold.core.exchange import Exchange, Reply
from ironhold.core.ids import new_request_id
from ironhold.core.keyfiles import load_or_create_ed25519
from ironhold.core.parts import Closer, Parts, close_parts
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
from ironhold.mcp.build import build_tools
from ironhold.mcp.gateway import ToolGateway
from ironhold.policy.authorizer import Authorizer
from ironhold.policy.engine import PolicyEngine
from ironhold.policy.stage import PolicyStage
from ironhold.routing.health import HealthChecker
from ironhold.routing.rollout_repository import SqlRolloutRepository
from ironhold.routing.rollouts import Decision, Rollouts
from ironhold.routing.router import Router
from ironhold.routing.shadow import Shadow, ShadowStage
from ironhold.routing.stats import Clock
from ironhold.store.sql import SqlStore, open_durable_engine, open_sql_store, state_dir_for
from ironhold.telemetry.embedding_drift import cosine, router_embedder
from ironhold.telemetry.insight import Insight
from ironhold.telemetry.metrics import Metrics
from ironhold.telemetry.signals import SignalBoard
from ironhold.telemetry.stage import TelemetryStage
from ironhold.telemetry.traces import SampledBranch, TracedStage, Tracer, routing
from ironhold.telemetry.webhook import SignalWebhook
from ironhold.upstream.local import LocalModelServer, ProvidedModel

log = logging.getLogger("ironhold")

@dataclass
class Gateway:
    """Everything a running gateway holds; ``api.create_app`` puts HTTP in front of it.

    A reload builds a new ``Gateway`` beside this one from the new config, taking over the
    parts whose config did not change (``parts``); requests already in flight here finish
    here (``in_flight``), and then the parts the new one did not take are closed."""

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
    parts: Parts
    audit: Auditor | None = None
    audit_stream: NatsAuditStream | None = None
    tracer: Tracer | None = None
    signals: SignalBoard | None = None
    insight: Insight | None = None
    webhook: SignalWebhook | None = None
    local_servers: list[LocalModelServer] = field(default_factory=list)
    health_checkers: list[HealthChecker] = field(default_factory=list)
    rollouts: Rollouts | None = None
    #: Per model group with a shadow deployment.
    shadows: dict[str, Shadow] = field(default_factory=dict)
    #: The MCP tool gateway (``/mcp``), when ``mcp.servers`` names any.
    tools: ToolGateway | None = None
    started: bool = False
    #: The config's version (SHA-256 of its canonical form) and when it was built into this.
    version: str = ""
    loaded_at: float = field(default_factory=time.time)
    #: Requests being served by this gateway (a retired one is closed when it reaches 0).
    in_flight: int = 0
    _idle: asyncio.Event | None = None
    #: Builds this gateway's successor from a new config, with the same transports, clock
    #: and log folder (``build_gateway`` sets it).
    rebuild: Callable[[Config, Parts], Gateway] | None = None

    async def start(self) -> None:
        """Start what no gateway has started yet: managed local model servers (verifying
        their files first), the audit writer, health checks, the detectors. If one fails, the
        caller closes the parts this gateway made (``parts.new()``). Started, it brings the
        parts it took over to its config (``Parts.on_commit``): the caller swaps it in next."""
        await self.parts.start()
        self.parts.commit()
        self.started = True

    async def close(self) -> None:
        """Close every part this gateway holds, last made first."""
        await close_parts(list(self.parts))

    def enter(self) -> None:
        self.in_flight += 1

    def leave(self) -> None:
        self.in_flight -= 1
        if not self.in_flight and self._idle is not None:
            self._idle.set()

    async def drained(self) -> None:
        """Return once no request is being served here (new ones go to its successor)."""
        if self.in_flight:
            self._idle = asyncio.Event()
            await self._idle.wait()

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


def build_guard(config: Config) -> GuardStage:
    overrides = {g.name: g.guard for g in config.models if g.guard is not None}
    return GuardStage(Guard(config.guard, overrides, InjectionModel.load()))


class _CurrentRouter:
    """The router of the gateway built last, for the parts that outlive a reload (embedding
    drift asks the embeddings group through it)."""

    def __init__(self, router: Router):
        self.router = router

    async def __call__(self, exchange: Exchange) -> Reply:
        return await self.router(exchange)


@dataclass
class _Signals:
    board: SignalBoard
    insight: Insight | None
    webhook: SignalWebhook | None
    route: _CurrentRouter


def build_gateway(config: Config, log_dir: Path | None = None, *,
                  transport_factory: TransportFactory = http_transport,
                  clock: Clock = time.monotonic, parts: Parts | None = None,
                  local_models: Mapping[str, ProvidedModel] | None = None) -> Gateway:
    """The gateway a config describes. ``parts``, made with the running gateway's parts as
    its ``previous`` (``Parts(running.parts)``), makes it a reload: every part whose config
    is unchanged is taken over rather than made again. ``local_models``: in a worker of
    ``serve --workers``, the managed local models its supervisor runs (by
    ``group/deployment``), used instead of starting servers of its own."""
    parts = Parts() if parts is None else parts
    base = config.base_dir
    # What the state database's parts are made from: where it is.
    database = (config.state.url, base)
    state: SqlStore | None = parts.take("state", database)
    if state is None:
        state = open_sql_store(config.state.url, base)
        parts.add("state", database, state, close=partial(asyncio.to_thread, state.close))
    metrics: Metrics = parts.take("metrics", None) or parts.add("metrics", None, Metrics())
    identity = (config.auth, config.identity, base)
    taken = parts.take("identity", identity)
    if taken is None:
        keys = key_service(config, state)
        authenticator = build_authenticator(config, state, keys)
        parts.add("identity", identity, (keys, authenticator),
                  close=authenticator.oidc.jwks.close if authenticator.oidc else None)
    else:
        keys, authenticator = taken
    rollouts: Rollouts | None = parts.take("rollouts", database)
    if rollouts is None:
        rollouts = Rollouts(SqlRolloutRepository(state))
        metrics.watch_rollouts(rollouts.shares)
        parts.add("rollouts", database, rollouts, start=rollouts.start, close=rollouts.stop)
    plan = rollouts.plan(config)
    parts.on_commit(partial(rollouts.adopt, plan))
    groups, local_servers, checkers = build_groups(config, parts, metrics, log_dir,
                                                   transport_factory, clock, plan, local_models)
    router = Router(groups, metrics, clock=clock)
    # The services, shared by the stages and the routes outside the model path.
    limit_store: LimitStore | None = parts.take("limits", config.state.redis)
    if limit_store is None:
        limit_store = RedisLimitStore(config.state.redis) if config.state.redis \
            else MemoryLimitStore()
        parts.add("limits", config.state.redis, limit_store, close=limit_store.close)
    quotas = Quotas(limit_store, config.limits)
    pricer = Pricer(config.limits.prices)
    authorizer = None
    if config.policy is not None:
        authorizer = Authorizer(PolicyEngine.load(config.policy.files, base),
                                quotas.remaining_budget_cents)
    traces = config.telemetry.traces
    tracer: Tracer | None = parts.take("tracer", traces)
    if tracer is None and traces.enabled:
        tracer = Tracer(traces, __version__, dropped=metrics.traces_dropped.inc)
        parts.add("tracer", traces, tracer, close=partial(asyncio.to_thread, tracer.close))
    audit, audit_stream = _audit_part(config, parts, state, pricer)
    signals = _signals_part(config, parts, metrics, audit, router)
    insight = signals.insight
    parts.on_commit(partial(setattr, rollouts, "on_decision",
                            partial(_rollout_decided, audit, signals.board)))
    shadows = _shadows(config, parts, metrics, router, audit, signals)
    stages: list[Stage] = [TelemetryStage(
        metrics, frozenset(groups), access_log=config.logging.access, tracer=tracer,
        insight=insight, rollout_answers=rollouts.answered if any(
            g.rollout for g in config.models) else None)]
    if audit is not None:
        stages.append(AuditStage(audit))
    decisions: list[tuple[str, Stage]] = [("identity", IdentityStage(authenticator))]
    if authorizer is not None:
        decisions.append(("policy", PolicyStage(authorizer)))
    decisions.append(("limits", LimitsStage(quotas, pricer)))
    injection: InjectionModel | None = None
    if config.guard.enabled:
        guard_from = (config.guard, [(g.name, g.guard) for g in config.models])
        guard = parts.take("guard", guard_from) or parts.add("guard", guard_from,
                                                             build_guard(config))
        decisions.append(("guard", guard))
        injection = guard.guard.model
    version = config_version(config)
    tools = build_tools(config, parts, state=state, keys=keys, metrics=metrics, quotas=quotas,
                        authorizer=authorizer, audit=audit, signals=signals.board,
                        injection=injection,
                        version=version, log_dir=log_dir)
    decisions.append(("chaos", ChaosStage(config.chaos.header, config.chaos.keys, authorizer)))
    if shadows:
        decisions.append(("shadow", ShadowStage(shadows)))
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
        parts=parts,
        audit=audit,
        audit_stream=audit_stream,
        tracer=tracer,
        signals=signals.board,
        insight=insight,
        webhook=signals.webhook,
        local_servers=local_servers,
        health_checkers=checkers,
        rollouts=rollouts,
        shadows=shadows,
        tools=tools,
        version=version,
        rebuild=partial(_rebuild, log_dir=log_dir, transport_factory=transport_factory,
                        clock=clock, local_models=local_models),
    )


def _rebuild(config: Config, parts: Parts, *, log_dir: Path | None,
             transport_factory: TransportFactory, clock: Clock,
             local_models: Mapping[str, ProvidedModel] | None) -> Gateway:
    return build_gateway(config, log_dir, transport_factory=transport_factory, clock=clock,
                         parts=parts, local_models=local_models)


def _audit_part(config: Config, parts: Parts, state: SqlStore,
                pricer: Pricer) -> tuple[Auditor | None, NatsAuditStream | None]:
    """The audit log: one writer per store, so a reload never makes a second (changes to
    ``audit`` need a restart); a reloaded price table is handed to the one there is."""
    if not config.audit.enabled:
        return None, None
    made_from = (config.audit, config.state.url, config.base_dir)
    taken = parts.take("audit", made_from)
    if taken is not None:
        audit, stream = taken
        parts.on_commit(partial(audit.price_with, pricer.answer))
        return audit, stream
    audit, stream = build_audit(config, state, pricer)

    async def start() -> None:
        await audit.log.start()
        if stream is not None:
            await stream.start()

    # The stream closes after the log, which may still publish to it.
    closers: list[Closer] = [audit.log.close, partial(asyncio.to_thread, audit.log.store.close)]
    if stream is not None:
        closers.append(stream.close)
    parts.add("audit", made_from, (audit, stream), start=start, close=closers)
    return audit, stream


def _signals_part(config: Config, parts: Parts, metrics: Metrics, audit: Auditor | None,
                  router: Router) -> _Signals:
    """The signal board, the detectors that raise signals on it, and where signals go (the
    audit log, a webhook). Taken over by a reload when ``telemetry.signals`` is unchanged: the
    detectors then follow the new model groups, keeping what they learnt of those that stay."""
    signals = config.telemetry.signals
    taken: _Signals | None = parts.take("signals", signals)
    if taken is not None:
        parts.on_commit(partial(setattr, taken.route, "router", router))
        if taken.insight is not None:
            parts.on_commit(partial(taken.insight.reconfigure, config))
        return taken
    board = SignalBoard(metrics, signals.keep_ended)
    route = _CurrentRouter(router)
    made = _Signals(board, None, None, route)
    if not signals.enabled:
        return parts.add("signals", signals, made)
    embedding = signals.embedding_drift
    made.insight = Insight(config, metrics, board, embed=router_embedder(route, embedding.model)
                           if embedding is not None else None)
    if audit is not None:
        board.on_change(lambda signal: audit.record_signal(signal.as_json()))
    closers: list[Closer] = [made.insight.stop]
    if signals.webhook is not None:
        made.webhook = SignalWebhook(signals.webhook)
        board.on_change(made.webhook)
        closers.insert(0, made.webhook.stop)

    async def start() -> None:
        assert made.insight is not None
        made.insight.start()
        if made.webhook is not None:
            made.webhook.start()

    # Stopped before the audit log closes (added after it, so closed before it).
    return parts.add("signals", signals, made, start=start, close=closers)


def _shadows(config: Config, parts: Parts, metrics: Metrics, router: Router,
             audit: Auditor | None, signals: _Signals) -> dict[str, Shadow]:
    """The groups' shadows. One whose settings are unchanged is taken over by a reload (its
    comparison goes on), and sends its copies through the new router from then on."""
    shadows: dict[str, Shadow] = {}
    embedding = config.telemetry.signals.embedding_drift
    similarity = (partial(_answer_similarity, signals.route, embedding.model)
                  if embedding is not None else None)
    record = audit.record_shadow if audit is not None else None
    for gc in config.models:
        if gc.shadow is None:
            continue
        made_from = (gc.shadow, gc.name)
        shadow: Shadow | None = parts.take(f"shadow:{gc.name}", made_from)
        mirror = partial(router.mirror, group=gc.name, deployment=gc.shadow.deployment)
        if shadow is None:
            shadow = Shadow(gc.name, gc.shadow.deployment, gc.shadow, metrics, mirror, record,
                            similarity)
            parts.add(f"shadow:{gc.name}", made_from, shadow, close=shadow.stop)
        else:
            parts.on_commit(partial(shadow.reconnect, mirror, record, similarity))
        shadows[gc.name] = shadow
    return shadows


async def _answer_similarity(route: Handler, group: str, a: str, b: str) -> float:
    """Cosine similarity of two answers' embeddings (the embeddings group's, through the
    gateway's own router)."""
    first, second = await router_embedder(route, group)([a, b])
    return cosine(first, second)


async def _rollout_decided(audit: Auditor | None, board: SignalBoard,
                           decision: Decision) -> None:
    state = decision.state
    if decision.action == "rolled_back":
        board.raise_("rollout", state.model, state.candidate, "gates",
                     {"reason": state.reason, **(decision.evidence or {})})
    elif decision.action in ("started", "promoted"):
        board.clear("rollout", state.model, state.candidate, "gates")
    if audit is not None:
        await audit.record_change(ChangeRecord(
            round(time.time(), 6), new_request_id(), decision.principal, "rollout",
            decision.action, {**state.as_json(), "evidence": decision.evidence}))


