"""The guard stage: scans what goes in before the router, and what comes out of it."""

from __future__ import annotations

from typing import Any

import orjson

from ironhold.core.exchange import Exchange, Operation, Reply
from ironhold.core.pipeline import Handler
from ironhold.guard.content import input_segments, output_segments
from ironhold.guard.engine import Guard, RequestGuard
from ironhold.guard.leaks import SystemPromptLeak, new_canary, plant_canary
from ironhold.guard.stream import GuardedStream

__all__ = ["GuardStage"]


class GuardStage:
    def __init__(self, guard: Guard):
        self.guard = guard

    async def __call__(self, exchange: Exchange, next_: Handler) -> Reply:
        plan = self.guard.plan(exchange.model)
        state = RequestGuard(plan)
        try:
            reroute = self.guard.scan_input(state, input_segments(exchange.operation,
                                                                  exchange.body))
        finally:
            exchange.guard.extend(state.records)
            state.records.clear()
        if reroute is not None:
            exchange.model = reroute
        if exchange.operation is Operation.CHAT:
            self._prepare_leak_checks(exchange, state)
        try:
            reply = await next_(exchange)
            if (reply.status != 200 or exchange.operation is Operation.EMBEDDING
                    or not plan.scans_output):
                return reply
            if reply.stream is not None:
                reply.stream = GuardedStream(reply.stream, self.guard, state, exchange,
                                             chat=exchange.operation is Operation.CHAT)
            elif reply.body is not None:
                reply.body = self._scan_answer(state, reply.body)
            return reply
        finally:
            exchange.guard.extend(state.records)

    def _prepare_leak_checks(self, exchange: Exchange, state: RequestGuard) -> None:
        leaks = state.plan.output.get("leaks")
        if leaks is None or leaks.action == "off":
            return
        messages = exchange.body.get("messages")
        if not isinstance(messages, list):
            return
        for message in messages:
            if (isinstance(message, dict) and message.get("role") in ("system", "developer")
                    and isinstance(message.get("content"), str)):
                state.system = SystemPromptLeak(message["content"])
                if state.plan.canary:
                    state.canary = new_canary()
                    message["content"] = plant_canary(message["content"], state.canary)
                return

    def _scan_answer(self, state: RequestGuard, body: bytes) -> bytes:
        try:
            doc: Any = orjson.loads(body)
        except orjson.JSONDecodeError:
            return body
        if not isinstance(doc, dict):
            return body
        segments = list(output_segments(doc))
        texts = [seg.text for seg in segments]
        self.guard.scan_output(state, segments)
        if [seg.text for seg in segments] == texts:
            return body  # nothing redacted or restored: the upstream's bytes, untouched
        return orjson.dumps(doc)
