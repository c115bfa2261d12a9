"""``CallOutcome``: one ended request as the watchers see it (SLOs, detectors, drift, the
console's recent requests). Built once, when the telemetry stage records the request; labels
come only from the server's own names."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from ironhold.core.errors import (
    AuditUnavailableError,
    GuardBlockedError,
    GuardUnavailableError,
    IronholdError,
    OverloadedError,
    PermissionDeniedError,
    UpstreamError,
)
from ironhold.core.exchange import Exchange
from ironhold.telemetry.answers import AnswerFacts

__all__ = ["CallOutcome", "Fault", "fault_of", "last_text", "prompt_features"]

#: Characters of the last message looked at to tell its script.
_SCRIPT_SAMPLE = 96


class Fault:
    """Whose fault an error was, for availability: a ``server`` fault counts against the SLO,
    a ``client`` one (bad request, bad key, the caller's own limits) does not."""

    NONE = ""
    CLIENT = "client"
    SERVER = "server"


_SERVER_FAULTS = (UpstreamError, AuditUnavailableError, GuardUnavailableError, OverloadedError)


def fault_of(exc: BaseException | None, error_type: str) -> str:
    if exc is None:
        if not error_type or error_type == "client_closed":
            return Fault.NONE
        # A stream that broke, an observer that failed, or a 4xx passed on from the model.
        return Fault.CLIENT if error_type[:1] == "4" else Fault.SERVER
    if isinstance(exc, _SERVER_FAULTS):
        return Fault.SERVER
    return Fault.CLIENT if isinstance(exc, IronholdError) else Fault.SERVER


@dataclass(slots=True)
class CallOutcome:
    at: float
    request_id: str
    operation: str
    #: The model group (a served name; ``_other`` for a name the gateway does not serve).
    model: str
    deployment: str | None
    latency: float
    ttft: float | None
    status: int | None
    #: ``ok`` or the error's code.
    outcome: str
    fault: str
    principal: str | None
    tenant: str | None
    facts: AnswerFacts | None
    prompt_chars: int
    script: str
    #: The guard blocked it: the category; the policy denied it; the caller's limits refused it.
    guard_blocked: str | None
    guard_notes: tuple[str, ...]
    policy: str | None
    limit_refused: str | None
    audit_seq: int | None
    trace_id: str | None
    cost_micros: int | None = None

    @classmethod
    def of(cls, exchange: Exchange, model: str, status: int | None, error_type: str,
           exc: BaseException | None, latency: float, facts: AnswerFacts | None,
           trace_id: str | None) -> CallOutcome:
        principal = exchange.principal
        policy = exchange.policy
        limits = exchange.limits
        blocked = (next((n.category or n.scanner for n in exchange.guard
                         if n.action == "block"), "blocked")
                   if isinstance(exc, GuardBlockedError) else None)
        chars, script = prompt_features(exchange.body)
        ttft = (exchange.first_token_at - exchange.started
                if exchange.first_token_at is not None and not error_type else None)
        return cls(
            at=time.time(), request_id=exchange.request_id,
            operation=exchange.operation.gen_ai_name, model=model,
            deployment=exchange.deployment, latency=latency, ttft=ttft, status=status,
            outcome=exchange.outcome, fault=fault_of(exc, error_type),
            principal=principal.id if principal is not None else None,
            tenant=principal.tenant if principal is not None else None,
            facts=facts, prompt_chars=chars, script=script, guard_blocked=blocked,
            guard_notes=tuple(f"{n.scanner}:{n.action}" for n in exchange.guard[:8]),
            policy=(None if policy is None else "allow" if policy.allowed else "deny"),
            limit_refused=(limits.refused_by or "limits"
                           if limits is not None and not limits.allowed else None),
            audit_seq=exchange.audit_seq, trace_id=trace_id, cost_micros=exchange.cost_micros)

    @property
    def policy_denied(self) -> bool:
        return self.policy == "deny" or self.outcome == PermissionDeniedError.code


def prompt_features(body: dict[str, Any]) -> tuple[int, str]:
    """The prompt's length in characters and the script of its last message (``latin``,
    ``cyrillic``, ``greek``, ``arabic``, ``hebrew``, ``cjk``, ``devanagari``, ``other``, or
    ``code`` for a message that reads as source code). Cheap: lengths are summed, and only
    the last message's first characters are looked at."""
    messages = body.get("messages")
    last = ""
    chars = 0
    if isinstance(messages, list):
        for message in messages:
            if isinstance(message, dict):
                content = message.get("content")
                if isinstance(content, str):
                    chars += len(content)
                    last = content
                elif isinstance(content, list):
                    for part in content:
                        if isinstance(part, dict) and isinstance(part.get("text"), str):
                            chars += len(part["text"])
                            last = part["text"]
    else:
        prompt = body.get("prompt", body.get("input"))
        if isinstance(prompt, str):
            chars, last = len(prompt), prompt
        elif isinstance(prompt, list):
            texts = [p for p in prompt if isinstance(p, str)]
            chars = sum(len(p) for p in texts)
            last = texts[-1] if texts else ""
    return chars, script_of(last[:_SCRIPT_SAMPLE])


def last_text(body: dict[str, Any]) -> str:
    """The last message's text (or the prompt), for embedding."""
    messages = body.get("messages")
    if isinstance(messages, list):
        for message in reversed(messages):
            if isinstance(message, dict):
                content = message.get("content")
                if isinstance(content, str):
                    return content
                if isinstance(content, list):
                    texts = [p["text"] for p in content
                             if isinstance(p, dict) and isinstance(p.get("text"), str)]
                    if texts:
                        return " ".join(texts)
        return ""
    prompt = body.get("prompt")
    if isinstance(prompt, list):
        prompt = next((p for p in reversed(prompt) if isinstance(p, str)), "")
    return prompt if isinstance(prompt, str) else ""


def script_of(sample: str) -> str:
    if not sample:
        return "none"
    if "```" in sample or sample.count(";") + sample.count("{") + sample.count("(") >= 4:
        return "code"
    if sample.isascii():
        return "latin"
    counts: dict[str, int] = {}
    for c in sample:
        if c.isalpha():
            name = _block(ord(c))
            counts[name] = counts.get(name, 0) + 1
    return max(counts, key=counts.__getitem__) if counts else "other"


def _block(code: int) -> str:
    if code < 0x250:
        return "latin"
    if 0x370 <= code < 0x400:
        return "greek"
    if 0x400 <= code < 0x530:
        return "cyrillic"
    if 0x590 <= code < 0x600:
        return "hebrew"
    if 0x600 <= code < 0x780:
        return "arabic"
    if 0x900 <= code < 0x980:
        return "devanagari"
    if 0x3040 <= code < 0xA000 or 0xAC00 <= code < 0xD7B0:
        return "cjk"
    return "other"
