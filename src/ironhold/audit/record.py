"""The audit record: what one request did, as the canonical JSON a Merkle leaf is made of.

A record is built from the finished ``Exchange`` (who, what, which policy and limits decided,
where it went, what it cost, how it ended) plus the SHA-256 of the request and response bodies.
The writer adds ``seq`` (its place in the log) and encodes it with sorted keys: those bytes are
stored verbatim and hashed, so verification never depends on re-serialising.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from ironhold.core.exchange import Exchange, Principal

__all__ = ["RECORD_VERSION", "build_event_record", "build_record", "encode_record"]

RECORD_VERSION = 1

def build_record(exchange: Exchange, status: int | None, outcome: str, response_sha256: str | None,
                 content: dict[str, Any] | None = None) -> dict[str, Any]:
    """The record of a finished request (without ``seq``: the writer assigns it)."""
    elapsed = time.perf_counter() - exchange.started
    principal = exchange.principal
    record: dict[str, Any] = {
        "v": RECORD_VERSION,
        "kind": "request",
        "time": round(time.time() - elapsed, 6),
        "request_id": exchange.request_id,
        "principal": principal.describe() if principal is not None else None,
        "client_ip": exchange.client_ip,
        "action": exchange.operation.action,
        "model": exchange.model,
        "group": exchange.group,
        "deployment": exchange.deployment,
        "model_digest": exchange.model_digest,
        "stream": exchange.stream,
        "policy": None,
        "limits": None,
        "usage": None,
        "cost_micros": exchange.cost_micros,
        "status": status,
        "outcome": outcome,
        "attempts": exchange.attempts,
        "latency_ms": round(elapsed * 1000, 3),
        "request_sha256": exchange.body_sha256,
        "response_sha256": response_sha256,
    }
    if exchange.policy is not None:
        record["policy"] = {"allowed": exchange.policy.allowed,
                            "policies": list(exchange.policy.policies),
                            "errors": list(exchange.policy.errors)}
    if exchange.limits is not None:
        limits = exchange.limits
        record["limits"] = {"allowed": limits.allowed, "counters": list(limits.counters),
                            "refused_by": limits.refused_by,
                            "reserved_tokens": limits.reserved_tokens,
                            "reserved_cost_micros": limits.reserved_cost_micros}
    if exchange.guard:
        record["guard"] = [note.record() for note in exchange.guard]
    if exchange.usage is not None:
        record["usage"] = {"prompt_tokens": exchange.usage.prompt_tokens,
                           "completion_tokens": exchange.usage.completion_tokens}
    if content is not None:
        record["content"] = content
    return record


def build_event_record(request_id: str, principal: Principal, action: str,
                       target: dict[str, Any], client_ip: str) -> dict[str, Any]:
    """The record of a change to who may do what: a key created or revoked, a passport
    issued (a delegation) or revoked."""
    return {"v": RECORD_VERSION, "kind": "event", "time": round(time.time(), 6),
            "request_id": request_id, "principal": principal.describe(),
            "client_ip": client_ip, "action": action, "target": target, "outcome": "ok"}


def encode_record(record: dict[str, Any], seq: int) -> bytes:
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
