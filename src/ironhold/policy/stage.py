"""The policy stage: every model call is decided by the Cedar policies (default deny), through
the shared ``Authorizer``. The decision is kept on the exchange for the audit record, allowed or
not.
"""

from __future__ import annotations

from ironhold.core.exchange import Exchange, Reply
from ironhold.core.pipeline import Handler
from ironhold.policy.authorizer import Authorizer, denied

__all__ = ["PolicyStage"]


class PolicyStage:
    def __init__(self, authorizer: Authorizer):
        self.authorizer = authorizer

    async def __call__(self, exchange: Exchange, next_: Handler) -> Reply:
        decision = await self.authorizer.decide(exchange)
        exchange.policy = decision
        if not decision.allowed:
            assert exchange.principal is not None
            raise denied(exchange.principal, decision)
        return await next_(exchange)
