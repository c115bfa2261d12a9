"""The live console: ``GET /console`` serves a small page (static files shipped in the package,
no build step) that an admin signs in to by typing an admin key; the page polls
``GET /admin/console/state`` every second with that key in the ``Authorization`` header (never
in a URL) and verifies audit records itself (``/admin/audit/leaves/{seq}``)."""

from __future__ import annotations

import time
from importlib import resources
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ironhold.api.audit import RequireAdmin
from ironhold.api.responses import json_response
from ironhold.core.errors import InvalidRequestError
from ironhold.routing.group import ModelGroup

if TYPE_CHECKING:
    from ironhold.bootstrap import Gateway
    from ironhold.telemetry.outcome import CallOutcome

__all__ = ["add_console_routes", "console_state"]

_ASSETS = {"console.js": "text/javascript", "console.css": "text/css"}
#: The page loads only its own files and talks only to its own origin.
_HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; script-src 'self'; style-src 'self'; "
                                "connect-src 'self'; img-src 'self' data:; "
                                "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
#: Recent requests and ended signals the state carries at most.
_RECENT = 50
_ENDED = 20


def _asset(name: str) -> bytes:
    return resources.files("ironhold.api").joinpath("console", name).read_bytes()


def add_console_routes(app: web.Application, require_admin: RequireAdmin) -> None:
    page = _asset("index.html")
    assets = {name: _asset(name) for name in _ASSETS}

    async def index(_: web.Request) -> web.Response:
        return web.Response(body=page, content_type="text/html", charset="utf-8",
                            headers=_HEADERS)

    async def asset(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in assets:
            raise web.HTTPNotFound()
        return web.Response(body=assets[name], content_type=_ASSETS[name], charset="utf-8",
                            headers=_HEADERS)

    async def state(request: web.Request) -> web.Response:
        gateway = await require_admin(request, "observe")
        return json_response(console_state(gateway))

    app.router.add_get("/console", index)
    app.router.add_get("/console/{name}", asset)
    app.router.add_get("/admin/console/state", state)


def console_state(gateway: Gateway) -> dict[str, Any]:
    """Everything the console shows, now."""
    insight = gateway.insight
    if insight is None:
        raise InvalidRequestError("The console needs signals on (telemetry.signals.enabled).")
    now = time.time()
    registry = gateway.metrics.registry
    models = []
    for name, group in gateway.router.groups.items():
        mono = group.clock()
        spent, allowed = group.budget.usage()
        deployments = []
        for d in group.deployments:
            state, detail = d.state(mono)
            # Failed attempts (retried elsewhere or not) over the outlier detector's window:
            # a dead deployment's requests mostly succeed on another one.
            attempts = d.attempts_window.total()
            deployments.append({"name": d.name, "version": d.version, "digest": d.digest,
                                "role": _role(group, d.name),
                                "state": state, "detail": detail,
                                "outstanding": d.outstanding,
                                **insight.live.of(name, d.name, now),
                                "attempt_error_rate": round(
                                    d.failures_window.total() / attempts, 4)
                                if attempts else 0.0})
        watched = insight.groups.get(name)
        models.append({
            "name": name, **insight.live.of(name, None, now),
            "retries": registry.get_sample_value("ironhold_retries_total",
                                                 {"model": name}) or 0,
            "hedges": registry.get_sample_value("ironhold_hedges_sent_total",
                                                {"model": name}) or 0,
            "retry_budget": {"spent": spent, "allowed": allowed},
            "slo": watched.slo_view if watched is not None else None,
            "deployments": deployments,
        })
    tallies = insight.tallies
    board = insight.board
    listed = board.listing()
    return {
        "time": now,
        "config_version": gateway.version,
        "models": models,
        "guard_blocks": tallies.guard_blocks,
        "policy_denials": tallies.policy_denials,
        "limit_refusals": tallies.limit_refusals,
        "spend_usd": {k: round(v / 1e6, 6) for k, v in tallies.spend_micros.items()},
        "signals": [s.as_json() for s in listed if s.active],
        "ended_signals": [s.as_json() for s in listed if not s.active][:_ENDED],
        "recent": [_recent(o) for o in list(insight.recent)[-_RECENT:][::-1]],
        "rollouts": gateway.rollouts.listing() if gateway.rollouts is not None else [],
        "shadows": [shadow.summary() for shadow in gateway.shadows.values()],
        "tool_calls": list(gateway.tools.recent)[::-1] if gateway.tools is not None else [],
    }


def _role(group: ModelGroup, deployment: str) -> str | None:
    if deployment == group.shadow:
        return "shadow"
    if group.split is not None and deployment == group.split.candidate:
        return "candidate"
    return None


def _recent(o: CallOutcome) -> dict[str, Any]:
    return {"id": o.request_id, "at": o.at, "principal": o.principal, "model": o.model,
            "deployment": o.deployment, "status": o.status, "outcome": o.outcome,
            "latency_ms": round(o.latency * 1000, 1), "guard": list(o.guard_notes),
            "policy": o.policy, "audit_seq": o.audit_seq, "trace_id": o.trace_id}
