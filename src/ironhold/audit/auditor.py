"""The auditor: the one service that puts records in the audit log and decides what a lost
record means. The audit stage uses it for requests, the admin and token routes for changes to
who may do what; neither calls the other."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Literal

import orjson

from ironhold.audit.log import AuditLog
from ironhold.audit.record import (
    AuditRecord,
    ChangeRecord,
    ShadowRecord,
    SignalRecord,
    build_record,
)
from ironhold.audit.redact import redact, redact_text
from ironhold.audit.store import StoredRecord
from ironhold.core.errors import AuditUnavailableError
from ironhold.core.exchange import Exchange
from ironhold.core.ids import new_request_id

__all__ = ["AnswerPrice", "Auditor"]

log = logging.getLogger("ironhold.audit")

#: Prices the answer (micro-dollars) from ``exchange.usage`` when nothing has yet
#: (bootstrap passes ``limits.quotas.Pricer.answer``).
AnswerPrice = Callable[[Exchange], int | None]


class Auditor:
    def __init__(self, audit: AuditLog, on_store_error: Literal["open", "closed"] = "closed",
                 content: bool = False, pricer: AnswerPrice | None = None):
        self.log = audit
        self._closed = on_store_error == "closed"
        #: ``audit.content``: records keep the redacted request and response.
        self.keep_content = content
        self._pricer = pricer

    async def record(self, exchange: Exchange, status: int | None, outcome: str,
                     response_sha256: str | None, response: bytes | None,
                     refused: bool = False) -> None:
        """Append the request's record and wait until it is durable. Raises
        ``AuditUnavailableError`` if it is lost and an answer must not go out unrecorded."""
        self._price(exchange)
        # Redaction scans every string of both bodies: off the loop.
        content = (await asyncio.to_thread(self._content_of, exchange, response)
                   if self.keep_content else None)
        try:
            stored = await self.log.append(build_record(exchange, status, outcome,
                                                        response_sha256, content))
            exchange.audit_seq = stored.seq
        except AuditUnavailableError:
            log.error("audit_record_lost", extra={"request_id": exchange.request_id})
            # A refusal gave the client nothing: it goes out as it is. An answer does not
            # go out unrecorded (unless ``on_store_error: open``).
            if self._closed and not refused:
                raise AuditUnavailableError(
                    "The request could not be recorded in the audit log, so it is not "
                    f"answered (request id {exchange.request_id}); try again shortly."
                ) from None

    def record_cancelled(self, exchange: Exchange) -> None:
        """Queue the record of a request whose client left, without waiting (the task is
        being cancelled and can wait for nothing)."""
        self._price(exchange)
        try:
            self.log.enqueue(build_record(exchange, None, "client_closed", None, None))
        except AuditUnavailableError:
            log.error("audit_record_lost", extra={"request_id": exchange.request_id})

    def record_signal(self, signal: dict[str, Any]) -> None:
        """Queue a signal's start or end without waiting (a lost one is logged)."""
        self._queue(SignalRecord(round(time.time(), 6), f"signal-{new_request_id()}", signal))

    def record_shadow(self, pair: dict[str, Any]) -> None:
        """Queue a shadow comparison without waiting (a lost one is logged)."""
        self._queue(ShadowRecord(round(time.time(), 6), f"shadow-{new_request_id()}", pair))

    def record_later(self, record: AuditRecord) -> asyncio.Future[StoredRecord] | None:
        """Queue a record without waiting for it: a change the gateway noticed itself (a tool
        quarantined), a call whose task is being cancelled and can wait for nothing, or the
        full record of a tool call whose intent is durable already. Its future resolves once
        it is durable (None: the log took nothing; a lost record is logged either way)."""
        return self._queue(record)

    def _queue(self, record: AuditRecord) -> asyncio.Future[StoredRecord] | None:
        try:
            future = self.log.enqueue(record)
        except AuditUnavailableError:
            log.error("audit_record_lost", extra={"request_id": record.request_id})
            return None
        future.add_done_callback(lambda done: _logged_if_lost(done, record.request_id))
        return future

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

    def record_ahead(self, record: AuditRecord) -> asyncio.Future[StoredRecord] | None:
        """Queue a record that must be durable before what it covers goes out, without waiting
        yet (a tool call's intent, committed while the tool works); ``durable`` waits for it.
        If the log takes nothing now: ``AuditUnavailableError`` at once, or (``on_store_error:
        open``) None, logged."""
        try:
            return self.log.enqueue(record)
        except AuditUnavailableError:
            log.error("audit_record_lost", extra={"request_id": record.request_id})
            if not self._closed:
                return None
            raise AuditUnavailableError(
                "The call could not be recorded in the audit log, so it was not made "
                f"(request id {record.request_id}); try again shortly.") from None

    async def durable(self, ahead: asyncio.Future[StoredRecord], request_id: str) -> None:
        """Wait for a record queued by ``record_ahead``. Raises ``AuditUnavailableError`` if it
        was lost and what it covers must not go out unrecorded (``on_store_error: closed``)."""
        try:
            await ahead
        except AuditUnavailableError:
            log.error("audit_record_lost", extra={"request_id": request_id})
            if self._closed:
                raise AuditUnavailableError(
                    "The tool call could not be recorded in the audit log, so its result is "
                    f"not passed on (request id {request_id}); try again shortly.") from None

    async def record_tool_call(self, record: AuditRecord, refused: bool) -> int | None:
        """Append a tool call's record and wait until it is durable (its ``seq``). A tool's
        result does not go out unrecorded (unless ``on_store_error: open``); a refusal does."""
        try:
            return (await self.log.append(record)).seq
        except AuditUnavailableError:
            log.error("audit_record_lost", extra={"request_id": record.request_id})
            if self._closed and not refused:
                raise AuditUnavailableError(
                    "The tool call could not be recorded in the audit log, so its result is "
                    f"not passed on (request id {record.request_id}); try again shortly."
                ) from None
            return None

    async def record_change(self, record: ChangeRecord) -> None:
        """Record a change to what the gateway runs (already made: a lost record is logged,
        it cannot undo the change)."""
        try:
            await self.log.append(record)
        except AuditUnavailableError:
            log.error("audit_record_lost", extra={"request_id": record.request_id})

    def price_with(self, pricer: AnswerPrice) -> None:
        """Price answers by a reloaded price table from now on."""
        self._pricer = pricer

    def _price(self, exchange: Exchange) -> None:
        if exchange.cost_micros is None and exchange.usage is not None and self._pricer:
            exchange.cost_micros = self._pricer(exchange)

    def _content_of(self, exchange: Exchange, response: bytes | None) -> dict[str, Any]:
        content: dict[str, Any] = {"request": redact(exchange.body)}
        if response:
            try:
                content["response"] = redact(orjson.loads(response))
            except orjson.JSONDecodeError:
                content["response"] = redact_text(response.decode("utf-8", "replace"))
        return content


def _logged_if_lost(future: asyncio.Future[Any], request_id: str) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("audit_record_lost", extra={"request_id": request_id})
