"""The audit record: what one request did, as the canonical JSON a Merkle leaf is made of.

A ``RequestRecord`` is built from the finished ``Exchange`` (who, what, which policy and limits
decided, where it went, what it cost, how it ended) plus the SHA-256 of the request and response
bodies; an ``EventRecord`` says who changed who may do what. Both are typed up to the log, which
takes any ``AuditRecord`` and asks it for its fields only when it encodes it. The writer adds
``seq`` (its place in the log) and encodes it with sorted keys: those bytes are
stored verbatim and hashed, so verification never depends on re-serialising.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from ironhold.core.exchange import (
    Exchange,
    GuardNote,
    LimitOutcome,
    PolicyDecision,
    Principal,
    Usage,
)

__all__ = ["RECORD_VERSION", "AuditRecord", "ChangeRecord", "EventRecord", "RequestRecord",
           "ShadowRecord", "SignalRecord", "ToolCallRecord", "ToolIntentRecord",
           "build_event_record",
           "build_record", "encode_record"]

RECORD_VERSION = 1


class AuditRecord(Protocol):
    """What the log takes: anything with a request id and the fields of its JSON."""

    @property
    def request_id(self) -> str: ...

    def fields(self) -> Mapping[str, Any]:
        """The record's JSON fields (without ``seq``: the writer assigns it)."""
        ...


@dataclass(slots=True)
class RequestRecord:
    """What one request did: who, what, which policy and limits decided, where it went, what
    it cost, how it ended."""

    time: float
    request_id: str
    principal: Principal | None
    client_ip: str
    action: str
    model: str
    group: str | None
    deployment: str | None
    model_digest: str | None
    stream: bool
    policy: PolicyDecision | None
    limits: LimitOutcome | None
    usage: Usage | None
    cost_micros: int | None
    status: int | None
    outcome: str
    attempts: int
    latency_ms: float
    request_sha256: str | None
    response_sha256: str | None
    guard: tuple[GuardNote, ...] = ()
    #: With ``audit.content``: the redacted request and response.
    content: dict[str, Any] | None = None
    #: The version of the config the request was served under.
    config_version: str = ""
    #: The answering deployment's ``version`` label.
    deployment_version: str | None = None

    def fields(self) -> dict[str, Any]:
        principal, policy, limits, usage = self.principal, self.policy, self.limits, self.usage
        out: dict[str, Any] = {
            "v": RECORD_VERSION,
            "kind": "request",
            "time": self.time,
            "request_id": self.request_id,
            "principal": principal.describe() if principal is not None else None,
            "client_ip": self.client_ip,
            "action": self.action,
            "model": self.model,
            "group": self.group,
            "deployment": self.deployment,
            "model_digest": self.model_digest,
            "stream": self.stream,
            "policy": None if policy is None else {
                "allowed": policy.allowed, "policies": list(policy.policies),
                "errors": list(policy.errors)},
            "limits": None if limits is None else {
                "allowed": limits.allowed, "counters": list(limits.counters),
                "refused_by": limits.refused_by, "reserved_tokens": limits.reserved_tokens,
                "reserved_cost_micros": limits.reserved_cost_micros},
            "usage": None if usage is None else {
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens},
            "cost_micros": self.cost_micros,
            "status": self.status,
            "outcome": self.outcome,
            "attempts": self.attempts,
            "latency_ms": self.latency_ms,
            "request_sha256": self.request_sha256,
            "response_sha256": self.response_sha256,
            "config_version": self.config_version,
        }
        if self.deployment_version is not None:
            out["deployment_version"] = self.deployment_version
        if self.guard:
            out["guard"] = [note.record() for note in self.guard]
        if self.content is not None:
            out["content"] = self.content
        return out


@dataclass(frozen=True, slots=True)
class EventRecord:
    """A change to who may do what: a key created or revoked, a passport issued (a
    delegation) or revoked."""

    time: float
    request_id: str
    principal: Principal
    client_ip: str
    action: str
    #: What changed, as the admin API shows it.
    target: Mapping[str, Any]

    def fields(self) -> dict[str, Any]:
        return {"v": RECORD_VERSION, "kind": "event", "time": self.time,
                "request_id": self.request_id, "principal": self.principal.describe(),
                "client_ip": self.client_ip, "action": self.action,
                "target": dict(self.target), "outcome": "ok"}


@dataclass(frozen=True, slots=True)
class SignalRecord:
    """A signal raised or ended by the gateway's own detectors (no caller: the gateway)."""

    time: float
    request_id: str
    #: The signal as ``GET /admin/signals`` lists it.
    signal: Mapping[str, Any]

    def fields(self) -> dict[str, Any]:
        return {"v": RECORD_VERSION, "kind": "signal", "time": self.time,
                "request_id": self.request_id, "signal": dict(self.signal)}


@dataclass(frozen=True, slots=True)
class ChangeRecord:
    """A change to what the gateway runs: a config reload (applied or refused), a rollout's
    step or decision. ``principal`` is who asked (None: the gateway itself, a signal or a file
    watch)."""

    time: float
    request_id: str
    principal: Principal | None
    action: str
    outcome: str
    detail: Mapping[str, Any]

    def fields(self) -> dict[str, Any]:
        return {"v": RECORD_VERSION, "kind": "change", "time": self.time,
                "request_id": self.request_id,
                "principal": None if self.principal is None else self.principal.describe(),
                "action": self.action, "outcome": self.outcome, "detail": dict(self.detail)}


@dataclass(frozen=True, slots=True)
class ShadowRecord:
    """A shadow copy compared with the client's answer (no caller of its own: it was never
    answered to anyone)."""

    time: float
    request_id: str
    #: The pair as ``GET /admin/shadow`` lists it (the client's request's id inside).
    pair: Mapping[str, Any]

    def fields(self) -> dict[str, Any]:
        return {"v": RECORD_VERSION, "kind": "shadow", "time": self.time,
                "request_id": self.request_id, "pair": dict(self.pair)}


@dataclass(slots=True)
class ToolCallRecord:
    """One MCP ``tools/call``: who (with the whole delegation chain), which tool of which
    server, what policy, limits and the guard decided, digests of the arguments and the
    result (never their text), and how it ended."""

    time: float
    request_id: str
    principal: Principal | None
    client_ip: str
    session: str | None
    server: str
    tool: str
    policy: PolicyDecision | None
    limits: LimitOutcome | None
    guard: tuple[GuardNote, ...]
    arguments_sha256: str | None
    result_sha256: str | None
    #: ok, tool_error, denied, quarantined, rate_limited, blocked, invalid, failed, cancelled.
    outcome: str
    #: The error's code when refused or failed (``policy_denied``, ``tool_quarantined``, ...).
    error: str | None
    latency_ms: float
    #: The pinned definition's digest the call was made against.
    tool_digest: str | None = None
    config_version: str = ""

    def fields(self) -> dict[str, Any]:
        return self._fields("tool")

    def _fields(self, kind: str) -> dict[str, Any]:
        policy, limits = self.policy, self.limits
        out: dict[str, Any] = {
            "v": RECORD_VERSION, "kind": kind, "time": self.time,
            "request_id": self.request_id,
            "principal": None if self.principal is None else self.principal.describe(),
            "client_ip": self.client_ip, "action": "call_tool", "session": self.session,
            "server": self.server, "tool": self.tool, "tool_digest": self.tool_digest,
            "policy": None if policy is None else {
                "allowed": policy.allowed, "policies": list(policy.policies),
                "errors": list(policy.errors)},
            "limits": None if limits is None else {
                "allowed": limits.allowed, "counters": list(limits.counters),
                "refused_by": limits.refused_by},
            "arguments_sha256": self.arguments_sha256, "result_sha256": self.result_sha256,
            "outcome": self.outcome, "error": self.error, "latency_ms": self.latency_ms,
            "config_version": self.config_version,
        }
        if self.guard:
            out["guard"] = [note.record() for note in self.guard]
        return out


@dataclass(slots=True)
class ToolIntentRecord:
    """A ``tools/call`` as it goes to the tool server, written ahead of its ``ToolCallRecord``:
    who, which tool, what policy, limits and the guard on the arguments decided, and the
    arguments' digest. It is durable before the tool's result is passed on; the full record,
    with the result's digest and the outcome, follows in the next commit. A ``tool_intent``
    without its ``tool`` record is a call whose end the gateway did not live to write."""

    call: ToolCallRecord

    @property
    def request_id(self) -> str:
        return self.call.request_id

    def fields(self) -> dict[str, Any]:
        out = self.call._fields("tool_intent")
        for unknown_yet in ("result_sha256", "outcome", "error", "latency_ms"):
            del out[unknown_yet]
        return out


def build_record(exchange: Exchange, status: int | None, outcome: str, response_sha256: str | None,
                 content: dict[str, Any] | None = None) -> RequestRecord:
    """The record of a finished request."""
    elapsed = time.perf_counter() - exchange.started
    return RequestRecord(
        time=round(time.time() - elapsed, 6), request_id=exchange.request_id,
        principal=exchange.principal, client_ip=exchange.client_ip,
        action=exchange.operation.action, model=exchange.model, group=exchange.group,
        deployment=exchange.deployment, model_digest=exchange.model_digest,
        stream=exchange.stream, policy=exchange.policy, limits=exchange.limits,
        usage=exchange.usage, cost_micros=exchange.cost_micros, status=status,
        outcome=outcome, attempts=exchange.attempts, latency_ms=round(elapsed * 1000, 3),
        request_sha256=exchange.body_sha256, response_sha256=response_sha256,
        guard=tuple(exchange.guard), content=content, config_version=exchange.config_version,
        deployment_version=exchange.deployment_version)


def build_event_record(request_id: str, principal: Principal, action: str,
                       target: Mapping[str, Any], client_ip: str) -> EventRecord:
    return EventRecord(round(time.time(), 6), request_id, principal, client_ip, action, target)


def encode_record(record: Mapping[str, Any], seq: int) -> bytes:
    """The canonical bytes of a record at ``seq``: sorted keys, no whitespace, UTF-8.

    Every record can be encoded: one whose values JSON cannot hold (an integer past 64 bits, a
    non-string key, nesting deeper than orjson writes) is written with those values made
    writable and ``"sanitized": true``, so one bad request can neither lose its own record nor
    fail the batch it shares with others."""
    try:
        return orjson.dumps({**record, "seq": seq}, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        clean = {str(k): _writable(v, 1) for k, v in record.items()}
        return orjson.dumps({**clean, "seq": seq, "sanitized": True},
                            option=orjson.OPT_SORT_KEYS)


#: Deeper values are replaced by a marker (orjson writes at most 254 levels).
_MAX_DEPTH = 64
_INT_RANGE = range(-(1 << 63), 1 << 64)


def _writable(value: Any, depth: int) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value if value in _INT_RANGE else str(value)
    if isinstance(value, float):
        return value  # orjson writes NaN and infinities as null
    if depth >= _MAX_DEPTH:
        return "[nested too deeply]"
    if isinstance(value, dict):
        return {str(k): _writable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_writable(v, depth + 1) for v in value]
    return repr(value)[:200]
