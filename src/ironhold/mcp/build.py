"""The MCP tool gateway's parts, built by the composition root (``bootstrap.build_gateway``).

Each upstream server is a part filed under its config, so a reload that leaves a server's
settings alone keeps its connection (and a stdio server its process). The catalogue is a part
of its own, shared by every gateway built on the same state database: a reload never re-pins.
"""

from __future__ import annotations

import time
from collections import deque
from functools import partial
from pathlib import Path

from ironhold.audit.auditor import Auditor
from ironhold.audit.record import ChangeRecord
from ironhold.config.schema import Config
from ironhold.core.ids import new_request_id
from ironhold.core.parts import Parts
from ironhold.guard.classifier import InjectionModel
from ironhold.identity.keys import KeyService
from ironhold.limits.quotas import Quotas
from ironhold.mcp.catalogue import Catalogue, CatalogueTool
from ironhold.mcp.gateway import RECENT, ToolGateway
from ironhold.mcp.guard import ToolGuard
from ironhold.mcp.pins import Pin, SqlPinRepository
from ironhold.mcp.sessions import Sessions
from ironhold.mcp.upstream import ToolServer
from ironhold.policy.authorizer import Authorizer
from ironhold.store.sql import SqlStore
from ironhold.telemetry.metrics import Metrics
from ironhold.telemetry.signals import SignalBoard

__all__ = ["build_tools"]


def build_tools(config: Config, parts: Parts, *, state: SqlStore, keys: KeyService,
                metrics: Metrics, quotas: Quotas, authorizer: Authorizer | None,
                audit: Auditor | None, signals: SignalBoard | None,
                injection: InjectionModel | None,
                version: str, log_dir: Path | None) -> ToolGateway | None:
    mcp = config.mcp
    if not mcp.enabled:
        return None
    database = (config.state.url, config.base_dir)
    on_change = partial(_quarantined, audit, signals)
    catalogue: Catalogue | None = parts.take("mcp:catalogue", database)
    if catalogue is None:
        # Told at once: the first lists are read while the gateway starts.
        catalogue = Catalogue(SqlPinRepository(state), on_change)
        parts.add("mcp:catalogue", database, catalogue)
    else:
        parts.on_commit(partial(catalogue.tell, on_change))
    parts.on_commit(partial(catalogue.keep, {s.name for s in mcp.servers}))
    servers: dict[str, ToolServer] = {}
    for server_config in mcp.servers:
        made_from = (server_config, mcp.refresh, config.base_dir)
        name = f"mcp:server:{server_config.name}"
        server: ToolServer | None = parts.take(name, made_from)
        if server is None:
            server = ToolServer(server_config, config.base_dir, mcp.refresh, log_dir)
            server.on_listing = partial(_listed, catalogue, metrics)
            parts.add(name, made_from, server, start=server.start, close=server.stop)
        servers[server_config.name] = server
    recent = parts.take("mcp:recent", None)
    if recent is None:
        recent = parts.add("mcp:recent", None, deque(maxlen=RECENT))
    guard = ToolGuard(mcp, injection, config.guard.on_error) if injection is not None else None
    return ToolGateway(mcp, servers, catalogue, quotas, metrics, authorizer=authorizer,
                       guard=guard, audit=audit, recent=recent, config_version=version,
                       sessions=Sessions(keys.subkey("mcp-session"), mcp.session_ttl,
                                         mcp.max_sessions))


async def _listed(catalogue: Catalogue, metrics: Metrics, server: ToolServer) -> None:
    await catalogue.follow(server)
    metrics.tools_quarantined.set(catalogue.quarantined())


def _quarantined(audit: Auditor | None, signals: SignalBoard | None,
                 tool: CatalogueTool, pin: Pin) -> None:
    """A pinned tool's definition changed: raise a signal and record it."""
    detail = {"tool": tool.qualified, "pinned_digest": pin.digest, "new_digest": tool.digest,
              "changed_at": pin.changed_at}
    if signals is not None:
        signals.raise_("tool_changed", tool.server, None, tool.qualified, detail)
    if audit is not None:
        audit.record_later(ChangeRecord(round(time.time(), 6), new_request_id(), None,
                                        "tool_quarantined", "quarantined", detail))
