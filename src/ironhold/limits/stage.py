"""The limits stage: admit a request against every counter it counts against, or refuse it with
a 429, ``Retry-After`` and OpenAI's ``x-ratelimit-*`` headers; settle with the real usage.

Counters: the caller's own limits (a key's, a passport's caps), those it inherits (the key a
passport was issued for, every ancestor passport) and its tenant's (``limits.tenants``).
Tokens and cost are reserved at admission (prompt estimate + ``max_tokens``, priced by
``limits.prices``) and corrected when the answer's usage is known, also for streams.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from ironhold.config.security import LimitsConfig
from ironhold.core.errors import RateLimitedError, UpstreamUnavailableError
from ironhold.core.events import Event
from ironhold.core.exchange import Exchange, LimitOutcome, Operation, Principal, Reply
from ironhold.core.pipeline import Handler
from ironhold.core.principal import Quota
from ironhold.core.tokens import estimate_prompt_tokens
from ironhold.limits.store import (
    Admission,
    Ask,
    Charge,
    LeaseIds,
    LimitStore,
    RateState,
    StoreUnavailableError,
)

log = logging.getLogger("ironhold.limits")

_WHAT = {
    "rpm": "requests per minute",
    "tpm": "tokens per minute",
    "concurrency": "concurrent requests",
    "budget_usd_daily": "daily spend budget",
    "budget_usd_monthly": "monthly spend budget",
}


class LimitsStage:
    def __init__(self, store: LimitStore, config: LimitsConfig):
        self.store = store
        self._config = config
        self._leases = LeaseIds()
        self._tenants = {name: Quota(**q.model_dump()) for name, q in config.tenants.items()}

    def charges(self, principal: Principal) -> list[Charge]:
        out = [Charge(cid, q) for cid, q in principal.quotas() if not q.is_empty()]
        tenant = self._tenants.get(principal.tenant or "")
        if tenant is not None:
            out.append(Charge(f"tenant:{principal.tenant}", tenant))
        return out

    async def remaining_budget_cents(self, principal: Principal) -> int | None:
        """For policies: the least budget left, in cents (None: no budget applies)."""
        charges = self.charges(principal)
        if not charges:
            return None
        try:
            left = await self.store.budget_left(charges, time.time())
        except Exception as exc:  # as in admission: the store is another process
            # Unknown, not zero: the admission that follows decides what a failure means.
            log.warning("limits_store_unavailable", extra={"error": type(exc).__name__})
            return None
        return None if left is None else left // 10_000

    async def __call__(self, exchange: Exchange, next_: Handler) -> Reply:
        principal = exchange.principal
        assert principal is not None, "the identity stage runs first"
        charges = self.charges(principal)
        if not charges:
            return await next_(exchange)
        if exchange.estimated_tokens is None:
            exchange.estimated_tokens = estimate_prompt_tokens(exchange.operation, exchange.body)
        completion = self._completion_allowance(exchange)
        tokens = exchange.estimated_tokens + completion
        cost = self._cost(exchange.model, exchange.estimated_tokens, completion)
        now = time.time()
        counters = tuple(c.counter for c in charges)
        # The lease is the server's own id, never the client's x-request-id: requests that
        # share an id must still take one concurrency slot each.
        lease = self._leases.next()
        try:
            admission: Admission | None = await self.store.admit(
                charges, Ask(lease, tokens, cost, now, self._config.lease_ttl))
        except Exception as exc:
            exchange.limits = LimitOutcome(False, counters, "store_unavailable")
            self._store_failed(exc)  # returns only when the policy admits
            admission = None
        if admission is None:  # the store is down and on_store_error is open
            exchange.limits = LimitOutcome(True, counters, "store_unavailable")
            return await next_(exchange)
        exchange.limits = LimitOutcome(admission.allowed, counters, admission.refused_by,
                                       tokens, cost)
        headers = rate_headers(admission)
        if not admission.allowed:
            raise _refusal(admission, charges, tokens, headers)
        settle = _Settlement(self.store, charges, exchange, lease, now, tokens, cost,
                             self._config)
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

    async def count_request(self, principal: Principal) -> None:
        """Count one request that reaches no model (minting a passport) against the caller's
        requests-per-minute and concurrency limits; raises ``RateLimitedError`` when over."""
        charges = self.charges(principal)
        if not charges:
            return
        now = time.time()
        lease = self._leases.next()
        try:
            admission = await self.store.admit(charges, Ask(lease, 0, 0, now,
                                                            self._config.lease_ttl))
        except Exception as exc:
            self._store_failed(exc)  # returns only when the policy admits
            return
        if not admission.allowed:
            raise _refusal(admission, charges, 0, rate_headers(admission))
        try:
            await self.store.settle(charges, lease, now, 0, 0, time.time())
        except Exception as exc:  # the lease lapses by itself after lease_ttl
            log.error("limits_settle_failed", extra={"error": type(exc).__name__})

    def _store_failed(self, exc: Exception) -> None:
        """An admission that failed: returns (admit anyway) only when the store is unreachable
        or too slow and ``on_store_error`` is open; raises a 503 otherwise. Any other failure
        (a bug, an argument the store cannot take) refuses whatever the policy, so a request
        can never open its own limits."""
        if isinstance(exc, StoreUnavailableError):
            log.error("limits_store_unavailable",
                      extra={"error": str(exc), "policy": self._config.on_store_error})
            if self._config.on_store_error == "open":
                return None
        else:
            log.error("limits_admission_failed", exc_info=exc)
        raise UpstreamUnavailableError(
            "Limits cannot be checked right now; try again shortly.") from None

    def _completion_allowance(self, exchange: Exchange) -> int:
        """Completion tokens to reserve: the cap the request sets (the edge bounds it), or the
        configured default, for each choice asked for."""
        if exchange.operation is Operation.EMBEDDING:
            return 0
        body = exchange.body
        per_choice = self._config.default_completion_tokens
        for name in ("max_completion_tokens", "max_tokens"):
            value = body.get(name)
            if isinstance(value, int) and value > 0:
                per_choice = value
                break
        choices = max((v for v in (body.get("n"), body.get("best_of"))
                       if isinstance(v, int) and v > 0), default=1)
        return per_choice * choices

    def price_answer(self, exchange: Exchange) -> int | None:
        """What the answer cost by the price table (micro-dollars); None without a price."""
        usage = exchange.usage
        if usage is None or exchange.model not in self._config.prices:
            return None
        return self._cost(exchange.model, usage.prompt_tokens, usage.completion_tokens)

    def _cost(self, model: str, prompt: int, completion: int) -> int:
        price = self._config.prices.get(model)
        if price is None:
            return 0
        return round(prompt * price.input_per_million + completion * price.output_per_million)


class _Settlement:
    """Corrects one request's reservation, exactly once; for a stream, when it ends (it is the
    stream's observer)."""

    def __init__(self, store: LimitStore, charges: Sequence[Charge], exchange: Exchange,
                 lease: str, admitted_at: float, tokens: int, cost: int, config: LimitsConfig):
        self._store = store
        self._charges = charges
        self._exchange = exchange
        self._lease = lease
        self._at = admitted_at
        self._tokens = tokens
        self._cost = cost
        self._config = config
        self._settled = False

    async def done(self) -> None:
        usage = self._exchange.usage
        if usage is None:  # no usage reported: the reservation stands
            await self._apply(0, 0)
            return
        used = usage.prompt_tokens + usage.completion_tokens
        price = self._config.prices.get(self._exchange.model)
        cost = 0 if price is None else round(usage.prompt_tokens * price.input_per_million
                                             + usage.completion_tokens * price.output_per_million)
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


def rate_headers(admission: Admission) -> dict[str, str]:
    headers: dict[str, str] = {}
    for kind, state in (("requests", admission.requests), ("tokens", admission.tokens)):
        if state is not None:
            headers[f"x-ratelimit-limit-{kind}"] = str(state.limit)
            headers[f"x-ratelimit-remaining-{kind}"] = str(max(0, state.remaining))
            headers[f"x-ratelimit-reset-{kind}"] = _duration(state.reset)
    return headers


def _duration(seconds: float) -> str:
    """OpenAI's form: ``1s``, ``6m0s``, ``0.5s``."""
    if seconds >= 60:
        minutes, rest = divmod(round(seconds), 60)
        return f"{minutes}m{rest}s"
    return f"{round(seconds, 3):g}s"


def _refusal(admission: Admission, charges: Sequence[Charge], tokens: int,
             headers: dict[str, str]) -> RateLimitedError:
    kind = admission.refused_by or "rpm"
    counter = admission.counter or ""
    whose = ("your tenant" if counter.startswith("tenant:") else
             "the agent passport chain" if counter.startswith("pp_") else
             "the API key" if counter.startswith("key_") else "this identity")
    quota = next((c.quota for c in charges if c.counter == counter), Quota())
    limit = getattr(quota, kind, None)
    if kind == "tpm" and limit is not None and tokens > limit:
        message = (f"This request needs about {tokens} tokens, more than the limit of {limit} "
                   f"tokens per minute for {whose}. Send a shorter prompt or a lower max_tokens.")
    else:
        shown = f"${limit:g}" if kind.startswith("budget") and limit is not None else limit
        message = (f"Rate limit reached: {_WHAT.get(kind, kind)} for {whose} (limit {shown}). "
                   f"Try again in {admission.retry_after:.1f}s.")
    code = "budget_exceeded" if kind.startswith("budget") else "rate_limit_exceeded"
    return RateLimitedError(message, retry_after=admission.retry_after, code=code,
                            headers=headers)


__all__ = ["LimitsStage", "RateState", "rate_headers"]
