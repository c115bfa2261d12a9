"""Signals POSTed to an operator's webhook as they start and end: one sender task, a bounded
queue (a slow or dead receiver costs dropped notices, logged, never the gateway's memory),
and a timeout per POST. Never retried: the signal list stays the record."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
from yarl import URL

from ironhold.config.telemetry import WebhookConfig
from ironhold.core.tasks import Background
from ironhold.telemetry.signals import Signal

__all__ = ["SignalWebhook"]

log = logging.getLogger("ironhold.signals")

_QUEUE = 256


class SignalWebhook:
    def __init__(self, config: WebhookConfig):
        self._config = config
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(_QUEUE)
        self._sender = Background(self._run, "signal-webhook")
        self.sent = 0
        self.failed = 0

    def __call__(self, signal: Signal) -> None:
        """A signal listener: queue the notice."""
        try:
            self._queue.put_nowait({"signal": signal.as_json()})
        except asyncio.QueueFull:
            self.failed += 1
            log.warning("signal webhook queue full: notice dropped",
                        extra={"signal": signal.kind, "model": signal.model})

    def start(self) -> None:
        self._sender.start()

    async def stop(self) -> None:
        await self._sender.stop()

    async def _run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self._config.timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                notice = await self._queue.get()
                try:
                    async with session.post(self._config.url, json=notice) as response:
                        if response.status >= 300:
                            raise aiohttp.ClientResponseError(
                                response.request_info, (), status=response.status)
                    self.sent += 1
                except (aiohttp.ClientError, TimeoutError) as exc:
                    self.failed += 1
                    # The URL may carry a token: only its host is logged.
                    log.warning("signal webhook failed", extra={
                        "host": URL(self._config.url).host,
                        "error": type(exc).__name__})
