"""Policy-as-code: Cedar policies over principals, actions, model groups and tools."""

from ironhold.policy.engine import PolicyEngine
from ironhold.policy.entities import RequestContext
from ironhold.policy.stage import PolicyStage

__all__ = ["PolicyEngine", "PolicyStage", "RequestContext"]
