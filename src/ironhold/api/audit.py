"""Admin routes of the audit log (policy action ``read_audit``): a request's records with
their inclusion proofs, checkpoints, and consistency proofs between two checkpoints.

Hashes and signatures are base64 (as in the signed checkpoint text). A proof is against a
signed checkpoint, so a client can check it with the audit public key alone
(``GET /admin/audit/checkpoints`` gives it), without trusting this server.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web
from cryptography.hazmat.primitives import serialization

from ironhold.api.context import request_id_of
from ironhold.api.responses import json_response
from ironhold.audit.checkpoint import key_id
from ironhold.audit.record import build_event_record
from ironhold.core.errors import InvalidRequestError, NotFoundError
from ironhold.core.principal import Principal

if TYPE_CHECKING:
    from ironhold.audit.log import AuditLog
    from ironhold.audit.store import StoredRecord
    from ironhold.bootstrap import Gateway

RequireAdmin = Callable[[web.Request, str], Awaitable["Gateway"]]
#: The authenticated admin of this request (set by ``require_admin``), for event records.
ADMIN = web.RequestKey("admin_principal", Principal)


async def record_event(gateway: Gateway, request: web.Request, principal: Principal,
                       action: str, target: dict[str, Any]) -> None:
    """Record a change to who may do what (keys, passports), durably, before answering."""
    if gateway.audit is None:
        return
    await gateway.audit.record_event(build_event_record(
        request_id_of(request), principal, action, target, request.remote or "0.0.0.0"))


#: The largest position or size a query may name: SQLite and PostgreSQL integers are 64-bit.
_MAX_POSITION = 2**62


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def add_audit_routes(app: web.Application, require_admin: RequireAdmin) -> None:

    async def audit_log(request: web.Request) -> AuditLog:
        gateway = await require_admin(request, "read_audit")
        if gateway.audit is None:
            raise NotFoundError("The audit log is off (audit.enabled: false).",
                                code="audit_disabled")
        return gateway.audit.log

    async def checkpoints(request: web.Request) -> web.Response:
        log = await audit_log(request)
        limit = _int_param(request, "limit", 20, low=1, high=1000)
        found = await asyncio.to_thread(log.store.checkpoints, limit)
        public = log.public_key.public_bytes(serialization.Encoding.Raw,
                                             serialization.PublicFormat.Raw)
        return json_response({"object": "list", "origin": log.origin,
                              "public_key": _b64(public), "key_id": key_id(log.public_key),
                              "data": [c.as_dict() for c in found]})

    async def records(request: web.Request) -> web.Response:
        log = await audit_log(request)
        request_id = request.match_info["request_id"]
        rows = await asyncio.to_thread(log.store.find, request_id)
        if not rows:
            raise NotFoundError(f"No audit record for request '{request_id}'.",
                                code="audit_record_not_found")
        return json_response({"object": "list",
                              "data": [await _proved(log, row, request) for row in rows]})

    async def leaf(request: web.Request) -> web.Response:
        log = await audit_log(request)
        seq = _int_param(request, "seq", None, low=0, source=request.match_info)
        row = await asyncio.to_thread(log.store.get, seq)
        if row is None:
            raise NotFoundError(f"No audit record {seq}.", code="audit_record_not_found")
        return json_response(await _proved(log, row, request))

    async def consistency(request: web.Request) -> web.Response:
        log = await audit_log(request)
        first = _int_param(request, "first", None, low=1)
        second = _int_param(request, "second", None, low=1)
        if first > second:
            raise InvalidRequestError("'first' must not be larger than 'second'.",
                                      param="first")
        older, newer = await asyncio.gather(asyncio.to_thread(log.store.checkpoint, first),
                                            asyncio.to_thread(log.store.checkpoint, second))
        for size, found in ((first, older), (second, newer)):
            if found is None:
                raise NotFoundError(f"No signed checkpoint of size {size}.",
                                    code="checkpoint_not_found")
        proof = await asyncio.to_thread(log.store.consistency_proof, first, second)
        assert older is not None and newer is not None
        return json_response({"first": older.as_dict(), "second": newer.as_dict(),
                              "proof": [_b64(p) for p in proof]})

    app.router.add_get("/admin/audit/checkpoints", checkpoints)
    app.router.add_get("/admin/audit/records/{request_id}", records)
    app.router.add_get("/admin/audit/leaves/{seq}", leaf)
    app.router.add_get("/admin/audit/consistency", consistency)


async def _proved(log: AuditLog, row: StoredRecord, request: web.Request) -> dict[str, Any]:
    """The record with its inclusion proof against the newest checkpoint that covers it (one
    is signed now if none does yet), or against ``?tree_size=`` (a checkpoint's size)."""
    if "tree_size" in request.query:
        size = _int_param(request, "tree_size", None, low=1)
        checkpoint = await asyncio.to_thread(log.store.checkpoint, size)
        if checkpoint is None:
            raise NotFoundError(f"No signed checkpoint of size {size}.",
                                code="checkpoint_not_found")
        if checkpoint.size <= row.seq:
            raise InvalidRequestError(f"Record {row.seq} is not in the tree of size {size}.",
                                      param="tree_size")
    else:
        newest = await asyncio.to_thread(log.store.checkpoints, 1)
        if not newest or newest[0].size <= row.seq:
            await log.checkpoint()  # none covers it yet (or another replica just signed one)
            newest = await asyncio.to_thread(log.store.checkpoints, 1)
        checkpoint = newest[0]
    proof = await asyncio.to_thread(log.store.inclusion_proof, row.seq, checkpoint.size)
    return {"seq": row.seq, "request_id": row.request_id, "leaf_hash": _b64(row.leaf_hash),
            "record": orjson.loads(row.record),
            # The exact bytes the leaf hash covers, so a client can check it itself.
            "record_json": row.record, "checkpoint": checkpoint.as_dict(),
            "inclusion_proof": [_b64(p) for p in proof]}


def _int_param(request: web.Request, name: str, default: int | None, low: int,
               high: int | None = None, source: Any = None) -> int:
    raw = (source if source is not None else request.query).get(name)
    if raw is None:
        if default is None:
            raise InvalidRequestError(f"'{name}' is required.", param=name)
        return default
    high = _MAX_POSITION if high is None else high
    try:
        value = int(raw) if len(raw) <= 20 else high + 1
    except ValueError:
        raise InvalidRequestError(f"'{name}' must be an integer.", param=name) from None
    if not low <= value <= high:
        raise InvalidRequestError(f"'{name}' must be between {low} and {high}.", param=name)
    return value
