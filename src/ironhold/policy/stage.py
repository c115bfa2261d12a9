"""The policy stage: every model call is decided by the Cedar policies (default deny).

The decision is kept on the exchange for the audit record, allowed or not. A refusal names the
deciding policies to admins only; other callers learn that policy refused, not how it is built.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ironhold.core.errors import PermissionDeniedError
from ironhold.core.exchange import Exchange, PolicyDecision, Principal, Reply
from ironhold.core.pipeline import Handler
from ironhold.core.tokens import estimate_prompt_tokens
from ironhold.policy.engine import PolicyEngine
from ironhold.policy.entities import RequestContext, ResourceType

#: The least budget left for a principal, in cents (None: no budget applies).
BudgetLookup = Callable[[Principal], Awaitable[int | None]]

class PolicyStage:
    def __init__(self, engine: PolicyEngine, remaining_budget: BudgetLookup | None = None):
        self.engine = engine
        self._remaining_budget = remaining_budget

    async def __call__(self, exchange: Exchange, next_: Handler) -> Reply:
        principal = exchange.principal
        assert principal is not None, "the identity stage runs first"
        if exchange.estimated_tokens is None:
            exchange.estimated_tokens = estimate_prompt_tokens(exchange.operation, exchange.body)
        remaining = None
        if self._remaining_budget is not None and self.engine.uses_budget:
            remaining = await self._remaining_budget(principal)
        context = RequestContext(
            operation=exchange.operation.value,
            estimated_tokens=exchange.estimated_tokens,
            remaining_budget_cents=remaining,
            client_ip=exchange.client_ip,
            stream=exchange.stream,
        )
        decision = self.engine.decide(principal, exchange.operation.action, "Model",
                                      exchange.model, context)
        exchange.policy = decision
        if not decision.allowed:
            raise denied(principal, decision)
        return await next_(exchange)

    def check(self, principal: Principal, action: str, resource_type: ResourceType,
              resource_id: str, client_ip: str) -> PolicyDecision:
        """A decision outside the model path (admin routes, listing models)."""
        return self.engine.decide(principal, action, resource_type, resource_id,
                                  RequestContext(operation=action, client_ip=client_ip))

    def require(self, principal: Principal, action: str, client_ip: str) -> None:
        """Refuse unless policy permits ``action`` on the gateway itself (admin actions)."""
        decision = self.check(principal, action, "Gateway", "ironhold", client_ip)
        if not decision.allowed:
            raise denied(principal, decision)


def denied(principal: Principal, decision: PolicyDecision) -> PermissionDeniedError:
    if principal.admin:
        return PermissionDeniedError(f"Policy refused this request: {decision.describe()}.",
                                     code="policy_denied")
    return PermissionDeniedError("Policy does not allow this request.", code="policy_denied")
