"""The audit stage: one record per request, durable before the client has its answer.

It runs right after telemetry, outside identity, so refusals (401, 403, 429) are recorded as
well as answers. A whole reply is held until its record is committed. A stream is observed
event by event (hashed as it goes out) and its record is committed before ``data: [DONE]`` goes
out, so the client cannot see a complete answer that the log could lose. A stream that ends
without ``[DONE]`` (cut, or ended by an error event) is recorded when it is closed, before the
response is finished. What a record holds and what a lost one means is the ``Auditor``'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib

from ironhold.audit.auditor import Auditor
from ironhold.core.errors import AuditUnavailableError, IronholdError
from ironhold.core.events import Event
from ironhold.core.exchange import Exchange, Reply
from ironhold.core.pipeline import Handler

__all__ = ["AuditStage"]

#: Streamed content kept for a record (``audit.content``) at most.
_CONTENT_CAP = 64 * 1024


class AuditStage:
    def __init__(self, auditor: Auditor):
        self.auditor = auditor

    async def __call__(self, exchange: Exchange, next_: Handler) -> Reply:
        auditor = self.auditor
        try:
            reply = await next_(exchange)
        except IronholdError as exc:
            await auditor.record(exchange, None, exc.code, None, None, refused=True)
            raise
        except asyncio.CancelledError:
            # The client left (the model may have been called): recorded without waiting,
            # since this task can no longer wait for anything.
            auditor.record_cancelled(exchange)
            raise
        except Exception:
            await auditor.record(exchange, None, "internal_error", None, None, refused=True)
            raise
        if reply.events is not None:
            reply.observers.append(_AuditedStream(exchange, auditor))
            return reply
        body = reply.payload()
        await auditor.record(exchange, reply.status, reply.outcome,
                             hashlib.sha256(body).hexdigest(), body)
        return reply


class _AuditedStream:
    """Hashes (and, with ``audit.content``, keeps) what is streamed; records it when it ends."""

    __slots__ = ("_auditor", "_content", "_exchange", "_hash")

    def __init__(self, exchange: Exchange, auditor: Auditor):
        self._exchange = exchange
        self._auditor = auditor
        self._hash = hashlib.sha256()
        self._content: bytearray | None = bytearray() if auditor.keep_content else None

    def on_event(self, event: Event, data: bytes) -> None:
        self._hash.update(data)
        if self._content is not None and len(self._content) < _CONTENT_CAP:
            self._content += data[:_CONTENT_CAP - len(self._content)]

    async def on_end(self, outcome: str) -> None:
        content = bytes(self._content) if self._content is not None else None
        if outcome == "ok":
            # Raising replaces [DONE] with this error: the answer is not complete unrecorded.
            await self._auditor.record(self._exchange, 200, outcome, self._hash.hexdigest(),
                                       content)
            return
        # The stream is over either way; a lost record is logged.
        with contextlib.suppress(AuditUnavailableError):
            await self._auditor.record(self._exchange, 200, outcome, self._hash.hexdigest(),
                                       content)
