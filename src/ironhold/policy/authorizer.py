"""The authorizer: Cedar decisions as a service, built once by bootstrap and used by the policy
stage (every model call) and by the routes outside the model path (admin actions, listing
models, minting passports). A refusal names the deciding policies to admins only; other callers
learn that policy refused, not how it is built.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from ironhold.core.errors import PermissionDeniedError
from ironhold.core.exchange import Exchange, PolicyDecision, Principal
from ironhold.core.tokens import estimate_prompt_tokens
from ironhold.policy.engine import PolicyEngine
from ironhold.policy.entities import RequestContext, ResourceType

__all__ = ["Authorizer", "BudgetLookup", "denied"]

#: The least budget left for a principal, in cents (None: no budget applies).
BudgetLookup = Callable[[Principal], Awaitable[int | None]]


class Authorizer:
    def __init__(self, engine: PolicyEngine, remaining_budget: BudgetLookup | None = None):
        self.engine = engine
        self._remaining_budget = remaining_budget

    async def decide(self, exchange: Exchange) -> PolicyDecision:
        """The decision on a model call (its budget looked up only if a policy reads it)."""
        principal = exchange.principal
        assert principal is not None, "the caller is known before policy decides"
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
        return self.engine.decide(principal, exchange.operation.action, "Model",
                                  exchange.model, context)

    def check(self, principal: Principal, action: str, resource_type: ResourceType,
              resource_id: str, client_ip: str) -> PolicyDecision:
        """A decision outside the model path (admin routes, listing models)."""
        return self.engine.decide(principal, action, resource_type, resource_id,
                                  RequestContext(operation=action, client_ip=client_ip))

    def decide_tool(self, principal: Principal, server: str, tool: str,
                    arguments: Mapping[str, Any] | None, client_ip: str) -> PolicyDecision:
        """A tool call's decision; ``arguments=None``: whether the tool is listed to the
        caller at all."""
        return self.engine.decide_tool(principal, server, tool, arguments, RequestContext(
            operation="tools/call" if arguments is not None else "tools/list",
            client_ip=client_ip))

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
