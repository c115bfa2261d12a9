"""The ``Exchange`` (one request's context as it passes the stages) and the ``Reply``."""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from ironhold.core.events import EventStream, Observer
from ironhold.core.principal import Principal
from ironhold.core.trace import TraceContext

__all__ = ["Exchange", "GuardNote", "LimitOutcome", "Operation", "PolicyDecision",
           "Principal", "Reply", "Usage"]

if TYPE_CHECKING:
    from ironhold.config.schema import FaultConfig


class Operation(enum.Enum):
    """What the client asked for; each maps to one upstream path."""

    CHAT = "chat"
    COMPLETION = "completion"
    EMBEDDING = "embedding"

    @property
    def upstream_path(self) -> str:
        return _PATHS[self]

    @property
    def gen_ai_name(self) -> str:
        """The OpenTelemetry GenAI ``gen_ai.operation.name``."""
        return _GEN_AI_NAMES[self]

    @property
    def action(self) -> str:
        """The action policies decide on and audit records name."""
        return _ACTIONS[self]


_PATHS = {
    Operation.CHAT: "/chat/completions",
    Operation.COMPLETION: "/completions",
    Operation.EMBEDDING: "/embeddings",
}
_ACTIONS = {
    Operation.CHAT: "chat",
    Operation.COMPLETION: "complete",
    Operation.EMBEDDING: "embed",
}
_GEN_AI_NAMES = {
    Operation.CHAT: "chat",
    Operation.COMPLETION: "text_completion",
    Operation.EMBEDDING: "embeddings",
}


@dataclass(frozen=True, slots=True)
class PolicyDecision:
    allowed: bool
    #: The deciding policies: the permits that allowed, or the forbids that denied (empty for
    #: a default deny: nothing permitted it).
    policies: tuple[str, ...]
    #: Policies that failed to evaluate (Cedar skips them).
    errors: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.allowed:
            return f"allowed by {', '.join(self.policies)}"
        if self.policies:
            return f"denied by {', '.join(self.policies)}"
        return "denied: no policy permits it (default deny)"


@dataclass(frozen=True, slots=True)
class LimitOutcome:
    """What the limits stage decided, for the audit record."""

    allowed: bool
    #: The counters the request was checked against (key, tenant, passports).
    counters: tuple[str, ...]
    refused_by: str | None = None
    reserved_tokens: int = 0
    reserved_cost_micros: int = 0


@dataclass(slots=True)
class GuardNote:
    """What the guard found at one place and what it did (``finding`` notes), or a scanner that
    failed there (``scanner == "error"``), for the audit record. Never the text itself."""

    scanner: str
    action: str
    where: str = ""
    category: str = ""
    owasp: str = ""
    score: float | None = None
    #: What fired (a rule, a detect-secrets plugin), never the matched value.
    detail: str = ""
    #: A failed scanner: the error's type, and how often it failed at this place.
    error: str = ""
    count: int = 1

    def record(self) -> dict[str, Any]:
        """The note as the audit record holds it (empty fields left out)."""
        if self.error:
            out: dict[str, Any] = {"scanner": self.scanner, "where": self.where,
                                   "error": self.error, "action": self.action}
            if self.count > 1:
                out["count"] = self.count
            return out
        out = {"scanner": self.scanner, "category": self.category, "owasp": self.owasp,
               "score": self.score, "action": self.action}
        if self.where:
            out["where"] = self.where
        if self.detail:
            out["detail"] = self.detail
        return out


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(slots=True)
class Exchange:
    """One request's context: identity, model, body, deadline and the decisions taken so far."""

    request_id: str
    operation: Operation
    model: str
    body: dict[str, Any]
    stream: bool
    #: The raw ``Authorization`` header; the identity stage turns it into ``principal``.
    credential: str | None = None
    principal: Principal | None = None
    #: The client's address as the gateway saw it.
    client_ip: str = "0.0.0.0"
    #: Prompt tokens estimated at admission (``estimate_tokens``), set by the first stage
    #: that needs it; real usage settles it later.
    estimated_tokens: int | None = None
    #: The policy decision, kept for the audit record (None: no policy configured).
    policy: PolicyDecision | None = None
    #: The limits decision (None: no limits apply to this caller).
    limits: LimitOutcome | None = None
    #: What the answer cost in micro-dollars by the price table (set when settled).
    cost_micros: int | None = None
    started: float = field(default_factory=time.perf_counter)
    #: SHA-256 (hex) of the request body as received, for the audit record.
    body_sha256: str | None = None
    #: Per-request deadlines asked for by the client (seconds); capped by the group's.
    timeout: float | None = None
    first_token_timeout: float | None = None
    #: The raw ``x-ironhold-fault`` header; the chaos stage turns it into ``faults``.
    fault_header: str | None = None
    #: Faults to inject into this request's upstream attempts (chaos).
    faults: tuple[FaultConfig, ...] = ()
    #: Set by the router: which group and deployment answered and how many attempts it took.
    group: str | None = None
    deployment: str | None = None
    model_digest: str | None = None
    #: The answering deployment's ``version`` label (its config's).
    deployment_version: str | None = None
    attempts: int = 0
    first_token_at: float | None = None
    usage: Usage | None = None
    #: Set when the reply is complete (or the stream ended or was cut).
    outcome: str = "pending"
    #: What the guard found and did, for the audit log.
    guard: list[GuardNote] = field(default_factory=list)
    #: The client's W3C ``traceparent`` and ``tracestate`` headers, as sent (read only when
    #: tracing is on); the telemetry stage turns them into ``trace``.
    traceparent: str | None = None
    tracestate: str | None = None
    #: This request's trace (None: tracing is off).
    trace: TraceContext | None = None
    #: The audit log's sequence number (leaf index) of this request's record, once durable.
    audit_seq: int | None = None
    #: The version of the config the request was served under (a reload changes it for later
    #: requests, never for this one).
    config_version: str = ""
    #: A rollout's side for this request (``candidate``, ``stable``), set by the router.
    rollout_side: str | None = None


@dataclass(slots=True)
class Reply:
    """What goes back to the client: a whole answer, or a stream of typed events.

    A whole answer is ``body`` (the bytes as they will go out) and, when it is a JSON object,
    ``answer`` (the same, decoded once by the router). A stage that changes ``answer`` sets
    ``body`` to None; ``payload()`` encodes it again, once. A stream is ``events``; stages that
    only watch it add themselves to ``observers`` (innermost stage first)."""

    status: int = 200
    body: bytes | None = None
    answer: dict[str, Any] | None = None
    events: EventStream | None = None
    headers: dict[str, str] = field(default_factory=dict)
    observers: list[Observer] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """An answer (not a model server's error passed on)."""
        return self.status < 400

    @property
    def outcome(self) -> str:
        """``ok``, or ``status_<code>`` for an error answer passed on from the model server."""
        return "ok" if self.status < 400 else f"status_{self.status}"

    def payload(self) -> bytes:
        """A whole answer's bytes."""
        if self.body is None:
            self.body = orjson.dumps(self.answer)
        return self.body
