"""Model groups, balancing and failover; the full resilience engine grows here."""

from ironhold.routing.balancer import LeastOutstandingP2C
from ironhold.routing.deployment import Deployment, ModelGroup
from ironhold.routing.router import Router

__all__ = ["Deployment", "LeastOutstandingP2C", "ModelGroup", "Router"]
