"""An optional copy of the audit log on NATS JetStream (``audit.nats``).

After a batch is durable in the database, its records are published in order to a JetStream
stream, one message per record: the canonical record bytes (the leaf data) with the sequence
number and leaf hash in headers, and ``Nats-Msg-Id`` set so a republished record is stored
once. Publishing is off the request path: a bounded queue and one task. While NATS is down
records wait in the queue (oldest dropped past its bound, with a logged count); the database
stays the system of record, and ``ironhold audit export`` can fill any gap.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging

import nats
from nats.js.errors import NotFoundError

from ironhold.audit.store import StoredRecord
from ironhold.config.security import AuditNatsConfig

__all__ = ["NatsAuditStream"]

log = logging.getLogger("ironhold.audit")

_QUEUE_BOUND = 100_000


class NatsAuditStream:
    def __init__(self, config: AuditNatsConfig, origin: str):
        self._config = config
        self._origin = origin
        self._queue: collections.deque[StoredRecord] = collections.deque()
        self._ready = asyncio.Event()
        self._idle = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.published = 0
        self._connected = False
        self.dropped = 0

    def __call__(self, batch: list[StoredRecord]) -> None:
        """Queue a durable batch for publishing (the ``AuditLog`` sink)."""
        overflow = len(self._queue) + len(batch) - _QUEUE_BOUND
        for _ in range(max(0, overflow)):
            self._queue.popleft()
            self.dropped += 1
        if overflow > 0:
            log.error("audit_stream_dropped", extra={"records": overflow})
        self._queue.extend(batch)
        self._idle.clear()
        self._ready.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="audit-nats")

    async def close(self, drain_for: float = 5.0) -> None:
        """Publish what is queued (for up to ``drain_for`` seconds, if connected), then stop."""
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(drain_for):
                if self._queue and self._connected:
                    await self._idle.wait()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        delay = 0.5
        while True:
            try:
                await self._publish_forever()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("audit_stream_unavailable",
                            extra={"error": type(exc).__name__, "queued": len(self._queue)})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def _publish_forever(self) -> None:
        client = await nats.connect(self._config.url, allow_reconnect=False,
                                    connect_timeout=2)
        try:
            js = client.jetstream()
            try:
                await js.stream_info(self._config.stream)
            except NotFoundError:
                await js.add_stream(name=self._config.stream, subjects=[self._config.subject])
            self._connected = True
            while True:
                await self._ready.wait()
                while self._queue:
                    record = self._queue[0]
                    await js.publish(self._config.subject, record.record.encode(), headers={
                        "Nats-Msg-Id": f"{self._origin}:{record.seq}",
                        "Ironhold-Audit-Seq": str(record.seq),
                        "Ironhold-Audit-Leaf": record.leaf_hash.hex(),
                    })
                    self._queue.popleft()
                    self.published += 1
                self._ready.clear()
                self._idle.set()
        finally:
            self._connected = False
            with contextlib.suppress(Exception):
                await client.close()
