"""The limits stage: admit a request against every counter it counts against, or refuse it with
a 429, ``Retry-After`` and OpenAI's ``x-ratelimit-*`` headers; settle with the real usage.

Counters (``Quotas.charges``): the caller's own limits (a key's, a passport's caps), those it
inherits (the key a passport was issued for, every ancestor passport) and its tenant's
(``limits.tenants``). Tokens and cost are reserved at admission (prompt estimate +
``max_tokens``, priced by the ``Pricer``) and corrected when the answer's usage is known, also
for streams.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from ironhold.core.events import Event
from ironhold.core.exchange import Exchange, LimitOutcome, Operation, Reply
from ironhold.core.pipeline import Handler
from ironhold.core.tokens import estimate_prompt_tokens
from ironhold.limits.quotas import Pricer, Quotas, rate_headers, refusal
from ironhold.limits.store import Admission, Ask, Charge, LimitStore

log = logging.getLogger("ironhold.limits")


class LimitsStage:
    def __init__(self, quotas: Quotas, pricer: Pricer):
        self.quotas = quotas
        self.pricer = pricer

    async def __call__(self, exchange: Exchange, next_: Handler) -> Reply:
        principal = exchange.principal
        assert principal is not None, "the identity stage runs first"
        charges = self.quotas.charges(principal)
        if not charges:
            return await next_(exchange)
        if exchange.estimated_tokens is None:
            exchange.estimated_tokens = estimate_prompt_tokens(exchange.operation, exchange.body)
        completion = self._completion_allowance(exchange)
        tokens = exchange.estimated_tokens + completion
        cost = self.pricer.cost(exchange.model, exchange.estimated_tokens, completion)
        now = time.time()
        counters = tuple(c.counter for c in charges)
        lease = self.quotas.lease()
        store = self.quotas.store
        try:
            admission: Admission | None = await store.admit(
                charges, Ask(lease, tokens, cost, now, self.quotas.config.lease_ttl))
        except Exception as exc:
            exchange.limits = LimitOutcome(False, counters, "store_unavailable")
            self.quotas.store_failed(exc)  # returns only when the policy admits
            admission = None
        if admission is None:  # the store is down and on_store_error is open
            exchange.limits = LimitOutcome(True, counters, "store_unavailable")
            return await next_(exchange)
        exchange.limits = LimitOutcome(admission.allowed, counters, admission.refused_by,
                                       tokens, cost)
        headers = rate_headers(admission)
        if not admission.allowed:
            raise refusal(admission, charges, tokens, headers)
        settle = _Settlement(store, charges, exchange, lease, now, tokens, cost, self.pricer)
        try:
            reply = await next_(exchange)
        except BaseException:
            await settle.refund()
            raise
        reply.headers.update(headers)
        if reply.events is not None:
            reply.observers.append(settle)
            return reply
        if reply.ok:
            await settle.done()
        else:
            await settle.refund()
        return reply

    def _completion_allowance(self, exchange: Exchange) -> int:
        """Completion tokens to reserve: the cap the request sets (the edge bounds it), or the
        configured default, for each choice asked for."""
        if exchange.operation is Operation.EMBEDDING:
            return 0
        body = exchange.body
        per_choice = self.quotas.config.default_completion_tokens
        for name in ("max_completion_tokens", "max_tokens"):
            value = body.get(name)
            if isinstance(value, int) and value > 0:
                per_choice = value
                break
        choices = max((v for v in (body.get("n"), body.get("best_of"))
                       if isinstance(v, int) and v > 0), default=1)
        return per_choice * choices


class _Settlement:
    """Corrects one request's reservation, exactly once; for a stream, when it ends (it is the
    stream's observer)."""

    def __init__(self, store: LimitStore, charges: Sequence[Charge], exchange: Exchange,
                 lease: str, admitted_at: float, tokens: int, cost: int, pricer: Pricer):
        self._store = store
        self._charges = charges
        self._exchange = exchange
        self._lease = lease
        self._at = admitted_at
        self._tokens = tokens
        self._cost = cost
        self._pricer = pricer
        self._settled = False

    async def done(self) -> None:
        usage = self._exchange.usage
        if usage is None:  # no usage reported: the reservation stands
            await self._apply(0, 0)
            return
        used = usage.prompt_tokens + usage.completion_tokens
        cost = self._pricer.cost(self._exchange.model, usage.prompt_tokens,
                                 usage.completion_tokens)
        self._exchange.cost_micros = cost
        await self._apply(used - self._tokens, cost - self._cost)

    def on_event(self, event: Event, data: bytes) -> None:
        pass

    async def on_end(self, outcome: str) -> None:
        await self.done()

    async def refund(self) -> None:
        await self._apply(-self._tokens, -self._cost)

    async def _apply(self, token_delta: int, cost_delta: int) -> None:
        if self._settled:
            return
        self._settled = True
        try:
            await self._store.settle(self._charges, self._lease, self._at,
                                     token_delta, cost_delta, time.time())
        except Exception as exc:  # logged: the answer has been given already
            log.error("limits_settle_failed", extra={"error": type(exc).__name__})


__all__ = ["LimitsStage"]
