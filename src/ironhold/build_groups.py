"""The model groups a config describes, built as parts for the composition root
(``bootstrap``): each deployment with its transport and, for a managed local model, its server;
each group with its balancer, budgets and health checks. A reload takes over every deployment
and group whose config is unchanged (see ``core.parts``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path

from ironhold.chaos import FaultTransport
from ironhold.config.schema import Config, DeploymentConfig, ModelGroupConfig
from ironhold.core.errors import ConfigError
from ironhold.core.parts import Closer, Parts
from ironhold.routing.deployment import Deployment
from ironhold.routing.group import ModelGroup
from ironhold.routing.health import HealthChecker
from ironhold.routing.rollouts import RolloutPlan
from ironhold.routing.stats import Clock
from ironhold.telemetry.metrics import Metrics
from ironhold.upstream.http import HttpTransport
from ironhold.upstream.local import LocalModelServer, ProvidedModel
from ironhold.upstream.transport import Transport

__all__ = ["TransportFactory", "build_groups", "http_transport"]

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



def build_groups(config: Config, parts: Parts, metrics: Metrics, log_dir: Path | None,
                  transport_factory: TransportFactory, clock: Clock, plan: RolloutPlan,
                  local_models: Mapping[str, ProvidedModel] | None = None,
                  ) -> tuple[dict[str, ModelGroup], list[LocalModelServer], list[HealthChecker]]:
    """The model groups. A deployment whose target is unchanged is taken over with all it
    knows (ejections, latency statistics, bulkhead, connections, a local model's process); a
    group whose settings and deployments are unchanged is taken over whole, and a rebuilt one
    keeps the old one's budgets where their settings did not change."""
    groups: dict[str, ModelGroup] = {}
    local_servers: list[LocalModelServer] = []
    checkers: list[HealthChecker] = []
    for gc in config.models:
        deployments = [
            _deployment_part(config, gc, i, dc, parts, metrics, local_servers, log_dir,
                             transport_factory, local_models)
            for i, dc in enumerate(gc.deployments)
        ]
        made_from = (gc, tuple(map(id, deployments)))
        group: ModelGroup | None = parts.take(f"group:{gc.name}", made_from)
        if group is None:
            group = ModelGroup(name=gc.name, deployments=deployments, policy=gc.routing,
                               metrics=metrics, fallbacks=list(gc.fallbacks),
                               fallback_on=gc.fallback_on, owned_by=gc.owned_by, clock=clock,
                               split=plan.split(gc.name),
                               shadow=gc.shadow.deployment if gc.shadow else None)
            old = parts.previous(f"group:{gc.name}")
            if isinstance(old, ModelGroup):
                group.carry_from(old)
                group.created = old.created
            parts.add(f"group:{gc.name}", made_from, group)
        groups[gc.name] = group
        health_check = gc.routing.outlier.health_check
        if health_check is not None:
            checker_from = (health_check, id(group))
            checker: HealthChecker | None = parts.take(f"health:{gc.name}", checker_from)
            if checker is None:
                checker = HealthChecker(group, health_check)
                parts.add(f"health:{gc.name}", checker_from, checker,
                          start=_started(checker.start), close=checker.stop)
            checkers.append(checker)
    return groups, local_servers, checkers


def _deployment_part(
    config: Config,
    group: ModelGroupConfig,
    index: int,
    dc: DeploymentConfig,
    parts: Parts,
    metrics: Metrics,
    local_servers: list[LocalModelServer],
    log_dir: Path | None,
    transport_factory: TransportFactory,
    local_models: Mapping[str, ProvidedModel] | None = None,
) -> Deployment:
    name = dc.name or f"{group.name}-{index}"
    provided = None
    if dc.local is not None and local_models is not None:
        provided = local_models.get(f"{group.name}/{name}")
        if provided is None:
            raise ConfigError(
                f"models[{group.name}].deployments[{name}]: with --workers, the supervisor "
                "starts the managed local models when it starts; restart it to add or change "
                "one")
    # What it is, not how much it is used: a reweighted deployment is the same deployment.
    target = dc.model_copy(update={"weight": 1.0, "max_concurrent": None, "version": None})
    made_from = (group.name, target, tuple(group.faults), config.base_dir, log_dir)
    part_name = f"deployment:{group.name}/{name}"
    taken: tuple[Deployment, LocalModelServer | None] | None = parts.take(part_name, made_from)
    if taken is not None:
        deployment, server = taken
        parts.on_commit(partial(_reweigh, deployment, dc))
        if server is not None:
            local_servers.append(server)
        return deployment
    faults = [*group.faults, *dc.faults]
    server = None
    if provided is not None:
        base_url = provided.url
    elif dc.local is not None:
        server = LocalModelServer(name, dc.local, config.base_dir, log_dir)
        base_url = server.base_url
    else:
        assert dc.url is not None
        base_url = dc.url
    transport = transport_factory(base_url, dc)
    deployment = Deployment(
        name=name, group=group.name, upstream_model=dc.model or group.name,
        transport=FaultTransport(transport, name, faults, metrics),
        weight=dc.weight, max_concurrent=dc.max_concurrent,
        available=server is None, version=dc.version,
        digest=provided.digest if provided is not None else
        server.digest if server is not None else None,
        default_max_tokens=dc.local.default_max_tokens if dc.local is not None else None)
    metrics.set_available(group.name, name, server is None)
    closers: list[Closer] = [transport.close]
    if server is not None:
        def on_availability(up: bool) -> None:
            deployment.available = up
            deployment.digest = server.digest  # a signed file's digest is known once verified
            metrics.set_available(group.name, name, up)

        server.on_availability = on_availability
        closers.insert(0, server.stop)  # the server stops before its transport closes
        local_servers.append(server)
    parts.add(part_name, made_from, (deployment, server),
              start=server.start if server is not None else None, close=closers)
    return deployment


def _reweigh(deployment: Deployment, dc: DeploymentConfig) -> None:
    deployment.weight, deployment.max_concurrent = dc.weight, dc.max_concurrent
    deployment.version = dc.version


def _started(start: Callable[[], None]) -> Closer:
    async def run() -> None:
        start()

    return run
