"""The audit stage: one record per request, durable before the client has its answer.

It runs right after telemetry, outside identity, so refusals (401, 403, 429) are recorded as
well as answers. A whole reply is held until its record is committed. A stream is observed
event by event (hashed as it goes out) and its record is committed before ``data: [DONE]`` goes
out, so the client cannot see a complete answer that the log could lose. A stream that ends
without ``[DONE]`` (cut, or ended by an error event) is recorded when it is closed, before the
response is finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable
from typing import Any, Literal

import orjson

from ironhold.audit.log import AuditLog
from ironhold.audit.record import AuditRecord, build_record
from ironhold.audit.redact import redact, redact_text
from ironhold.core.errors import AuditUnavailableError, IronholdError
from ironhold.core.events import Event
from ironhold.core.exchange import Exchange, Reply
from ironhold.core.pipeline import Handler

__all__ = ["AuditStage"]

log = logging.getLogger("ironhold.audit")

#: Prices the answer (micro-dollars) from ``exchange.usage`` when nothing has yet.
Pricer = Callable[[Exchange], int | None]

#: Streamed content kept for a record (``audit.content``) at most.
_CONTENT_CAP = 64 * 1024


class AuditStage:
    def __init__(self, audit: AuditLog, on_store_error: Literal["open", "closed"] = "closed",
                 content: bool = False, pricer: Pricer | None = None):
        self.log = audit
        self._closed = on_store_error == "closed"
        self.keep_content = content
        self._pricer = pricer

    async def __call__(self, exchange: Exchange, next_: Handler) -> Reply:
        try:
            reply = await next_(exchange)
        except IronholdError as exc:
            await self.record(exchange, None, exc.code, None, None, refused=True)
            raise
        except asyncio.CancelledError:
            # The client left (the model may have been called): recorded without waiting,
            # since this task can no longer wait for anything.
            self._record_cancelled(exchange)
            raise
        except Exception:
            await self.record(exchange, None, "internal_error", None, None, refused=True)
            raise
        if reply.events is not None:
            reply.observers.append(_AuditedStream(exchange, self))
            return reply
        body = reply.payload()
        await self.record(exchange, reply.status, reply.outcome,
                          hashlib.sha256(body).hexdigest(), body)
        return reply

    async def record(self, exchange: Exchange, status: int | None, outcome: str,
                     response_sha256: str | None, response: bytes | None,
                     refused: bool = False) -> None:
        """Append the request's record and wait until it is durable."""
        if exchange.cost_micros is None and exchange.usage is not None and self._pricer:
            exchange.cost_micros = self._pricer(exchange)
        # Redaction scans every string of both bodies: off the loop.
        content = (await asyncio.to_thread(self._content_of, exchange, response)
                   if self.keep_content else None)
        try:
            await self.log.append(build_record(exchange, status, outcome, response_sha256,
                                               content))
        except AuditUnavailableError:
            log.error("audit_record_lost", extra={"request_id": exchange.request_id})
            # A refusal gave the client nothing: it goes out as it is. An answer does not
            # go out unrecorded (unless ``on_store_error: open``).
            if self._closed and not refused:
                raise AuditUnavailableError(
                    "The request could not be recorded in the audit log, so it is not "
                    f"answered (request id {exchange.request_id}); try again shortly."
                ) from None

    def _record_cancelled(self, exchange: Exchange) -> None:
        if exchange.cost_micros is None and exchange.usage is not None and self._pricer:
            exchange.cost_micros = self._pricer(exchange)
        try:
            self.log.enqueue(build_record(exchange, None, "client_closed", None, None))
        except AuditUnavailableError:
            log.error("audit_record_lost", extra={"request_id": exchange.request_id})

    async def record_event(self, record: AuditRecord) -> None:
        """Record a change to who may do what (made already), durably, before answering."""
        try:
            await self.log.append(record)
        except AuditUnavailableError:
            log.error("audit_record_lost", extra={"request_id": record.request_id})
            if self._closed:
                raise AuditUnavailableError(
                    "The change was made but could not be recorded in the audit log; check "
                    "the log's storage."
                ) from None

    def _content_of(self, exchange: Exchange, response: bytes | None) -> dict[str, Any]:
        content: dict[str, Any] = {"request": redact(exchange.body)}
        if response:
            try:
                content["response"] = redact(orjson.loads(response))
            except orjson.JSONDecodeError:
                content["response"] = redact_text(response.decode("utf-8", "replace"))
        return content


class _AuditedStream:
    """Hashes (and, with ``audit.content``, keeps) what is streamed; records it when it ends."""

    __slots__ = ("_content", "_exchange", "_hash", "_stage")

    def __init__(self, exchange: Exchange, stage: AuditStage):
        self._exchange = exchange
        self._stage = stage
        self._hash = hashlib.sha256()
        self._content: bytearray | None = bytearray() if stage.keep_content else None

    def on_event(self, event: Event, data: bytes) -> None:
        self._hash.update(data)
        if self._content is not None and len(self._content) < _CONTENT_CAP:
            self._content += data[:_CONTENT_CAP - len(self._content)]

    async def on_end(self, outcome: str) -> None:
        content = bytes(self._content) if self._content is not None else None
        if outcome == "ok":
            # Raising replaces [DONE] with this error: the answer is not complete unrecorded.
            await self._stage.record(self._exchange, 200, outcome, self._hash.hexdigest(),
                                     content)
            return
        # The stream is over either way; a lost record is logged.
        with contextlib.suppress(AuditUnavailableError):
            await self._stage.record(self._exchange, 200, outcome, self._hash.hexdigest(),
                                     content)
