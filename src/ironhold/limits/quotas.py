"""The limits as services, built once by bootstrap and shared: ``Quotas`` (who is charged for a
request, how much budget is left, one request counted) and ``Pricer`` (what tokens cost by
``limits.prices``). The limits stage, the policy stage (budget left) and the passport endpoint
(a mint counted as a request) all use the same two objects; no stage calls another.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ironhold.config.security import LimitsConfig, PriceConfig
from ironhold.core.errors import RateLimitedError, UpstreamUnavailableError
from ironhold.core.exchange import Exchange, Principal
from ironhold.core.principal import Quota
from ironhold.limits.store import (
    Admission,
    Ask,
    Charge,
    LeaseIds,
    LimitStore,
    StoreUnavailableError,
)

__all__ = ["Held", "Pricer", "Quotas", "rate_headers", "refusal"]

log = logging.getLogger("ironhold.limits")


@dataclass(frozen=True, slots=True)
class Held:
    """A request admitted by ``Quotas.hold`` (or refused: ``admission.allowed``)."""

    charges: tuple[Charge, ...]
    admission: Admission
    lease: str
    #: When it was admitted (Unix seconds).
    at: float

_WHAT = {
    "rpm": "requests per minute",
    "tpm": "tokens per minute",
    "concurrency": "concurrent requests",
    "budget_usd_daily": "daily spend budget",
    "budget_usd_monthly": "monthly spend budget",
}


class Pricer:
    """What tokens cost, in micro-dollars, by the price table."""

    def __init__(self, prices: Mapping[str, PriceConfig]):
        self._prices = dict(prices)

    def cost(self, model: str, prompt: int, completion: int) -> int:
        """The cost of ``prompt`` and ``completion`` tokens of ``model`` (0 without a price)."""
        price = self._prices.get(model)
        if price is None:
            return 0
        return round(prompt * price.input_per_million + completion * price.output_per_million)

    def answer(self, exchange: Exchange) -> int | None:
        """What the exchange's answer cost by its usage; None without usage or a price."""
        usage = exchange.usage
        if usage is None or exchange.model not in self._prices:
            return None
        return self.cost(exchange.model, usage.prompt_tokens, usage.completion_tokens)


class Quotas:
    """The counters a principal is charged against, over one ``LimitStore``."""

    def __init__(self, store: LimitStore, config: LimitsConfig):
        self.store = store
        self.config = config
        self._leases = LeaseIds()
        self._tenants = {name: Quota(**q.model_dump()) for name, q in config.tenants.items()}

    def charges(self, principal: Principal) -> list[Charge]:
        """The caller's own limits, those it inherits (the key a passport was issued for,
        every ancestor passport) and its tenant's."""
        out = [Charge(cid, q) for cid, q in principal.quotas() if not q.is_empty()]
        tenant = self._tenants.get(principal.tenant or "")
        if tenant is not None:
            out.append(Charge(f"tenant:{principal.tenant}", tenant))
        return out

    def lease(self) -> str:
        """A new lease id: the server's own, never the client's x-request-id, so requests
        that share an id still take one concurrency slot each."""
        return self._leases.next()

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

    async def count_request(self, principal: Principal) -> None:
        """Count one request that reaches no model (minting a passport) against the caller's
        requests-per-minute and concurrency limits; raises ``RateLimitedError`` when over."""
        charges = self.charges(principal)
        held = await self.hold(charges)
        if held is None:
            return
        if not held.admission.allowed:
            raise refusal(held.admission, charges, 0, rate_headers(held.admission))
        await self.release(held)

    async def hold(self, charges: Sequence[Charge]) -> Held | None:
        """Admit one request that uses no tokens (a passport minted, a tool called) against
        ``charges``' requests-per-minute and concurrency. Admitted, it holds a concurrency
        slot until ``release``. None: nothing to count, or the store failed and the policy
        admits (``store_failed``)."""
        if not charges:
            return None
        lease, now = self.lease(), time.time()
        try:
            admission = await self.store.admit(charges, Ask(lease, 0, 0, now,
                                                            self.config.lease_ttl))
        except Exception as exc:
            self.store_failed(exc)  # returns only when the policy admits
            return None
        return Held(tuple(charges), admission, lease, now)

    async def release(self, held: Held) -> None:
        """Give back an admitted ``hold``'s concurrency slot (its request stays counted)."""
        try:
            await self.store.settle(held.charges, held.lease, held.at, 0, 0, time.time())
        except Exception as exc:  # the lease lapses by itself after lease_ttl
            log.error("limits_settle_failed", extra={"error": type(exc).__name__})

    def store_failed(self, exc: Exception) -> None:
        """An admission that failed: returns (admit anyway) only when the store is unreachable
        or too slow and ``on_store_error`` is open; raises a 503 otherwise. Any other failure
        (a bug, an argument the store cannot take) refuses whatever the policy, so a request
        can never open its own limits."""
        if isinstance(exc, StoreUnavailableError):
            log.error("limits_store_unavailable",
                      extra={"error": str(exc), "policy": self.config.on_store_error})
            if self.config.on_store_error == "open":
                return None
        else:
            log.error("limits_admission_failed", exc_info=exc)
        raise UpstreamUnavailableError(
            "Limits cannot be checked right now; try again shortly.") from None


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


def refusal(admission: Admission, charges: Sequence[Charge], tokens: int,
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
