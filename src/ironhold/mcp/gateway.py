"""The MCP tool gateway as a service, independent of HTTP and JSON-RPC: what a caller may see,
and one tool call taken through the same trust stack as a model call::

    identity (api) → tool known, not quarantined → scope → arguments match the schema
      → policy (Cedar, arguments in context) → limits (per caller and tool)
      → guard (arguments) → the tool server → guard (result) → audit

Default deny: without ``policy``, only a credential whose ``tools:`` scope names a tool may
call it.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson

from ironhold.audit.auditor import Auditor
from ironhold.audit.record import ToolCallRecord, ToolIntentRecord
from ironhold.audit.store import StoredRecord
from ironhold.config.mcp import McpConfig, ToolLimits
from ironhold.core.errors import (
    GuardBlockedError,
    InvalidRequestError,
    IronholdError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
    ToolServerError,
)
from ironhold.core.exchange import GuardNote, LimitOutcome, PolicyDecision
from ironhold.core.principal import Principal, Quota
from ironhold.limits.quotas import Quotas, rate_headers, refusal
from ironhold.limits.store import Charge
from ironhold.mcp.catalogue import Catalogue, CatalogueTool, Entry
from ironhold.mcp.guard import ToolGuard
from ironhold.mcp.sessions import Sessions
from ironhold.mcp.upstream import Progress, ToolServer
from ironhold.policy.authorizer import Authorizer, denied
from ironhold.telemetry.metrics import Metrics

__all__ = ["RECENT", "ToolCall", "ToolGateway"]

#: Calls the console can list.
RECENT = 50


@dataclass(slots=True)
class ToolCall:
    """One ``tools/call`` on its way through the gateway."""

    request_id: str
    principal: Principal
    client_ip: str
    name: str
    arguments: dict[str, Any]
    session: str | None = None
    progress: Progress | None = None
    started: float = field(default_factory=time.perf_counter)
    policy: PolicyDecision | None = None
    limits: LimitOutcome | None = None
    guard: list[GuardNote] = field(default_factory=list)
    arguments_sha256: str | None = None
    result_sha256: str | None = None


class ToolGateway:
    def __init__(self, config: McpConfig, servers: dict[str, ToolServer], catalogue: Catalogue,
                 quotas: Quotas, metrics: Metrics, *, authorizer: Authorizer | None,
                 guard: ToolGuard | None, audit: Auditor | None, sessions: Sessions,
                 recent: deque[dict[str, Any]] | None = None, config_version: str = ""):
        self.config = config
        #: The latest calls, for the console (kept across reloads: ``mcp.build``).
        self.recent: deque[dict[str, Any]] = recent if recent is not None else deque(
            maxlen=RECENT)
        self.sessions = sessions
        #: Calls in flight by (session, JSON-RPC id), for ``notifications/cancelled``, and
        #: those a client cancelled so.
        self.in_flight: dict[tuple[str, str], asyncio.Task[Any]] = {}
        self.cancelled: set[tuple[str, str]] = set()
        self.servers = servers
        self.catalogue = catalogue
        self._quotas = quotas
        self._metrics = metrics
        self._authorizer = authorizer
        self._guard = guard
        self._audit = audit
        self._version = config_version
        self._server_configs = {s.name: s for s in config.servers}

    # -- seeing ------------------------------------------------------------------------------

    def may_see(self, principal: Principal, tool: CatalogueTool, client_ip: str) -> bool:
        if tool.quarantined or not self._in_scope(principal, tool.qualified):
            return False
        if self._authorizer is None:
            return True
        return self._authorizer.decide_tool(principal, tool.server, tool.name, None,
                                            client_ip).allowed

    def list_tools(self, principal: Principal, client_ip: str) -> list[dict[str, Any]]:
        """The tools this caller may call (some arguments of), as ``tools/list`` shows them."""
        return [t.listing for t in self.catalogue.tools.values()
                if self.may_see(principal, t, client_ip)]

    def _in_scope(self, principal: Principal, qualified: str) -> bool:
        tools = principal.scopes.tools
        if self._authorizer is None:  # no policy: only what a credential names explicitly
            return tools is not None and qualified in tools
        return tools is None or qualified in tools

    def _server_visible(self, principal: Principal, server: str, client_ip: str) -> bool:
        """Resources and prompts go to callers who may see some tool of their server."""
        return any(t.server == server and self.may_see(principal, t, client_ip)
                   for t in self.catalogue.tools.values())

    def list_resources(self, principal: Principal, client_ip: str) -> list[dict[str, Any]]:
        return [e.listing for e in self.catalogue.resources.values()
                if self._server_visible(principal, e.server, client_ip)]

    def list_prompts(self, principal: Principal, client_ip: str) -> list[dict[str, Any]]:
        return [e.listing for e in self.catalogue.prompts.values()
                if self._server_visible(principal, e.server, client_ip)]

    async def read_resource(self, principal: Principal, uri: str,
                            client_ip: str) -> dict[str, Any]:
        entry = self.catalogue.resources.get(uri)
        self._visible_entry(principal, entry, client_ip, f"resource '{uri[:200]}'")
        assert entry is not None
        return await self.servers[entry.server].read_resource(entry.name)

    async def get_prompt(self, principal: Principal, name: str, arguments: dict[str, str] | None,
                         client_ip: str) -> dict[str, Any]:
        entry = self.catalogue.prompts.get(name)
        self._visible_entry(principal, entry, client_ip, f"prompt '{name[:200]}'")
        assert entry is not None
        return await self.servers[entry.server].get_prompt(entry.name, arguments)

    def _visible_entry(self, principal: Principal, entry: Entry | None, client_ip: str,
                       what: str) -> None:
        if entry is None or not self._server_visible(principal, entry.server, client_ip):
            raise NotFoundError(f"No {what} here, or you may not use it.",
                                code="not_found")

    # -- calling -----------------------------------------------------------------------------

    async def call(self, call: ToolCall) -> dict[str, Any]:
        """Take one call through the trust stack; the tool's result (``CallToolResult``)."""
        tool = self.catalogue.tools.get(call.name)
        try:
            result = await self._call(call, tool)
        except IronholdError as exc:
            await self._record(call, tool, _outcome(exc), exc.code, refused=True)
            raise
        except BaseException:  # cancelled (the client's notification, or it left)
            self._count(call, tool, "cancelled")
            if self._audit is not None:
                self._audit.record_later(self._audit_record(call, tool, "cancelled", None))
            raise
        # The call's intent is durable already (``_call`` waited for it): the full record
        # follows in the next commit rather than holding the answer for a second one.
        self._record_later(call, tool, "tool_error" if result.get("isError") else "ok")
        return result

    async def _call(self, call: ToolCall, tool: CatalogueTool | None) -> dict[str, Any]:
        principal = call.principal
        if tool is None:
            raise NotFoundError(f"Unknown tool '{call.name[:200]}'.", code="unknown_tool",
                                param="name")
        if tool.quarantined:
            raise PermissionDeniedError(
                f"The tool '{tool.qualified}' changed since it was approved and is quarantined "
                "until an admin approves the change.", code="tool_quarantined")
        if not self._in_scope(principal, tool.qualified):
            raise PermissionDeniedError(
                f"This credential may not call the tool '{tool.qualified}'.",
                code="tool_not_permitted")
        call.arguments_sha256 = _digest(call.arguments)
        if tool.validator is not None:
            problem = next(iter(tool.validator.iter_errors(call.arguments)), None)
            if problem is not None and self._authorizer is not None:
                # A caller who may never call the tool learns that, not the tool's schema.
                call.policy = self._authorizer.decide_tool(principal, tool.server, tool.name,
                                                           None, call.client_ip)
                if not call.policy.allowed:
                    raise denied(principal, call.policy)
            if problem is not None:
                where = "/".join(str(p) for p in problem.absolute_path) or "arguments"
                raise InvalidRequestError(
                    f"The arguments do not match the tool's input schema at {where}: "
                    f"{problem.message[:300]}", param="arguments", code="invalid_arguments")
        if self._authorizer is not None:
            call.policy = self._authorizer.decide_tool(principal, tool.server, tool.name,
                                                       call.arguments, call.client_ip)
            if not call.policy.allowed:
                raise denied(principal, call.policy)
        held = await self._quotas.hold(self._charges(principal, tool))
        if held is not None:
            call.limits = LimitOutcome(held.admission.allowed,
                                       tuple(c.counter for c in held.charges),
                                       held.admission.refused_by)
            if not held.admission.allowed:
                raise refusal(held.admission, held.charges, 0, rate_headers(held.admission))
        guard = self._guard
        try:
            if guard is not None:
                await guard.arguments(tool.server, tool.name, call.arguments, call.guard)
            # Written ahead: the intent commits while the tool works, and the result is not
            # passed on until it is durable.
            ahead = (self._audit.record_ahead(ToolIntentRecord(self._audit_record(
                call, tool, "calling", None))) if self._audit is not None else None)
            result = await self.servers[tool.server].call_tool(tool.name, call.arguments,
                                                               call.progress)
            size = len(orjson.dumps(result))
            if size > self.config.max_result_bytes:
                raise ToolServerError(
                    f"The tool's result is {size} bytes, over the limit of "
                    f"{self.config.max_result_bytes} (mcp.max_result_bytes).",
                    rpc_code=-32603, code="result_too_large")
            if guard is not None:
                await guard.result(tool.server, tool.name, result, call.guard)
            call.result_sha256 = _digest(result)
            if ahead is not None:
                assert self._audit is not None
                await self._audit.durable(ahead, call.request_id)
            return result
        finally:
            if held is not None:
                await self._quotas.release(held)

    def _charges(self, principal: Principal, tool: CatalogueTool) -> list[Charge]:
        """The caller's own limits (a tool call counts as a request) and the per-tool ones."""
        charges = self._quotas.charges(principal)
        limits = self._tool_limits(tool)
        if limits.rpm is not None or limits.concurrency is not None:
            charges.append(Charge(f"tool:{tool.qualified}:{principal.counter_id}",
                                  Quota(rpm=limits.rpm, concurrency=limits.concurrency)))
        return charges

    def _tool_limits(self, tool: CatalogueTool) -> ToolLimits:
        """The most specific limits set: the tool's, its server's, or ``mcp.limits``."""
        server = self._server_configs.get(tool.server)
        if server is not None:
            own = server.tools.get(tool.name)
            if own is not None and own.limits is not None:
                return own.limits
            if server.limits is not None:
                return server.limits
        return self.config.limits

    async def _record(self, call: ToolCall, tool: CatalogueTool | None, outcome: str,
                      error: str | None, refused: bool) -> None:
        """A call that was refused or failed: its record, durable before the error goes out."""
        self._count(call, tool, outcome)
        seq = None
        if self._audit is not None:
            seq = await self._audit.record_tool_call(self._audit_record(
                call, tool, outcome, error), refused=refused)
        self._list(call, tool, outcome, error)["audit_seq"] = seq

    def _record_later(self, call: ToolCall, tool: CatalogueTool | None, outcome: str) -> None:
        """A call answered: its full record queued; the console learns its number once it is
        durable."""
        self._count(call, tool, outcome)
        listed = self._list(call, tool, outcome, None)
        if self._audit is not None:
            stored = self._audit.record_later(self._audit_record(call, tool, outcome, None))
            if stored is not None:
                stored.add_done_callback(lambda done: _numbered(listed, done))

    def _list(self, call: ToolCall, tool: CatalogueTool | None, outcome: str,
              error: str | None) -> dict[str, Any]:
        """What the console lists (names, decisions and digests: never arguments or results)."""
        decided = call.policy
        listed = {
            "id": call.request_id, "at": time.time(), "principal": call.principal.id,
            "chain": list(call.principal.chain),
            "tool": tool.qualified if tool else call.name[:200], "outcome": outcome,
            "error": error, "latency_ms": round((time.perf_counter() - call.started) * 1000, 1),
            "policy": ", ".join(decided.policies) if decided is not None else "",
            "guard": sorted({f"{n.category or n.scanner}:{n.action}" for n in call.guard}),
            "audit_seq": None}
        self.recent.append(listed)
        return listed

    def _audit_record(self, call: ToolCall, tool: CatalogueTool | None, outcome: str,
                      error: str | None) -> ToolCallRecord:
        server, name = (tool.server, tool.name) if tool else ("unknown", call.name[:200])
        return ToolCallRecord(
            time=round(time.time() - (time.perf_counter() - call.started), 6),
            request_id=call.request_id, principal=call.principal, client_ip=call.client_ip,
            session=call.session, server=server, tool=name, policy=call.policy,
            limits=call.limits, guard=tuple(call.guard),
            arguments_sha256=call.arguments_sha256, result_sha256=call.result_sha256,
            outcome=outcome, error=error,
            latency_ms=round((time.perf_counter() - call.started) * 1000, 3),
            tool_digest=tool.digest if tool else None, config_version=self._version)

    def _count(self, call: ToolCall, tool: CatalogueTool | None, outcome: str) -> None:
        server, name = (tool.server, tool.name) if tool else ("unknown", "unknown")
        self._metrics.tool_call(server, name, outcome, time.perf_counter() - call.started)


def _outcome(exc: IronholdError) -> str:
    if isinstance(exc, GuardBlockedError):
        return "blocked"
    if isinstance(exc, RateLimitedError):
        return "rate_limited"
    if exc.code == "tool_quarantined":
        return "quarantined"
    if isinstance(exc, PermissionDeniedError):
        return "denied"
    if isinstance(exc, InvalidRequestError | NotFoundError):
        return "invalid"
    return "failed"


def _numbered(listed: dict[str, Any], stored: asyncio.Future[StoredRecord]) -> None:
    if not stored.cancelled() and stored.exception() is None:
        listed["audit_seq"] = stored.result().seq


def _digest(value: Any) -> str:
    return hashlib.sha256(orjson.dumps(value, option=orjson.OPT_SORT_KEYS)).hexdigest()
