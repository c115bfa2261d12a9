"""The ``Exchange`` (one request's context as it passes the stages) and the ``Reply``."""

from __future__ import annotations

import enum
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ironhold.core.principal import Principal

__all__ = ["ChunkStream", "Exchange", "LimitOutcome", "Operation", "PolicyDecision",
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
    attempts: int = 0
    first_token_at: float | None = None
    usage: Usage | None = None
    #: Set when the reply is complete (or the stream ended or was cut).
    outcome: str = "pending"
    #: What the guard found and did (``Finding.record()`` plus ``action``), for the audit log.
    guard: list[dict[str, Any]] = field(default_factory=list)


class ChunkStream(Protocol):
    """A reply body that arrives in chunks. ``aclose`` must release everything it holds even
    if iteration never started, so the edge always calls it when it is done."""

    def __aiter__(self) -> AsyncIterator[bytes]: ...

    async def __anext__(self) -> bytes: ...

    async def aclose(self) -> None: ...


@dataclass(slots=True)
class Reply:
    """What goes back to the client: a whole JSON body, or a stream of SSE bytes."""

    status: int = 200
    body: bytes | None = None
    stream: ChunkStream | None = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
