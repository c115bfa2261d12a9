"""The guard stage: scans what goes in before the router, and what comes out of it."""

from __future__ import annotations

import asyncio
from typing import Any

from ironhold.core.errors import InvalidRequestError
from ironhold.core.exchange import Exchange, Operation, Reply
from ironhold.core.pipeline import Handler
from ironhold.guard.content import Segment, input_segments, output_segments, token_ids_in
from ironhold.guard.engine import Guard, Plan, RequestGuard
from ironhold.guard.leaks import SystemPromptLeak, new_canary, plant_canary
from ironhold.guard.stream import GuardedStream

__all__ = ["GuardStage"]


#: Texts up to this many characters are scanned on the event loop (well under a millisecond
#: for most); longer ones in a worker thread.
_INLINE_CHARS = 16_384
#: Long scans running at once; more wait their turn, so a flood of long prompts queues
#: instead of taking every worker thread and every share of the interpreter.
_LONG_SCANS = 2


class GuardStage:
    def __init__(self, guard: Guard):
        self.guard = guard
        self._long_scans = asyncio.Semaphore(_LONG_SCANS)

    async def __call__(self, exchange: Exchange, next_: Handler) -> Reply:
        plan = self.guard.plan(exchange.model)
        state = RequestGuard(plan)
        segments = list(input_segments(exchange.operation, exchange.body))
        chars = self._check_scannable(exchange, plan, segments)
        try:
            if chars <= _INLINE_CHARS:
                reroute = self.guard.scan_input(state, segments)
            else:
                # Long texts are scanned in a worker thread: the loop keeps serving others.
                async with self._long_scans:
                    reroute = await asyncio.to_thread(self.guard.scan_input, state, segments)
        finally:
            exchange.guard.extend(state.records)
            state.records.clear()
        if reroute is not None:
            exchange.model = reroute
        if exchange.operation is Operation.CHAT:
            self._prepare_leak_checks(exchange, state)
        try:
            reply = await next_(exchange)
            if not reply.ok or exchange.operation is Operation.EMBEDDING \
                    or not plan.scans_output:
                return reply
            if reply.events is not None:
                reply.events = GuardedStream(reply.events, self.guard, state, exchange,
                                             chat=exchange.operation is Operation.CHAT)
            elif reply.answer is not None:
                if reply.body is not None and len(reply.body) <= _INLINE_CHARS:
                    changed = self._scan_answer(state, reply.answer)
                else:
                    async with self._long_scans:
                        changed = await asyncio.to_thread(self._scan_answer, state,
                                                          reply.answer)
                if changed:
                    reply.body = None  # encoded again from the answer, once, at the edge
            return reply
        finally:
            exchange.guard.extend(state.records)

    def _check_scannable(self, exchange: Exchange, plan: Plan, segments: list[Segment]) -> int:
        """What the guard cannot scan must not reach the model: token ids, and more text than
        ``guard.max_input_chars``. Returns the characters of text to scan."""
        total = sum(len(seg.text) for seg in segments)
        if not plan.scans_input:
            return total
        if exchange.operation is not Operation.CHAT:
            field = token_ids_in(exchange.operation, exchange.body)
            if field is not None:
                raise InvalidRequestError(
                    f"'{field}' holds token ids, which the guard cannot scan; send text.",
                    param=field, code="unscannable_input")
        limit = self.guard.config.max_input_chars
        if total > limit:
            raise InvalidRequestError(
                f"The request holds {total} characters of text; the guard scans at most "
                f"{limit} (guard.max_input_chars).", code="input_too_long")
        return total

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

    def _scan_answer(self, state: RequestGuard, answer: dict[str, Any]) -> bool:
        """Scan a whole answer; True if anything in it was redacted or restored."""
        # Listed first: a redaction writes into the answer the walk is reading.
        return self.guard.scan_output(state, list(output_segments(answer)))
