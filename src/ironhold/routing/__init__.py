"""Model groups, balancing, outlier detection, retries, hedging, fallbacks and bulkheads."""

from ironhold.routing.balancer import LeastOutstanding, PeakEwmaP2C, RoundRobin
from ironhold.routing.deployment import Deployment
from ironhold.routing.group import ModelGroup
from ironhold.routing.health import HealthChecker
from ironhold.routing.router import Router

__all__ = ["Deployment", "HealthChecker", "LeastOutstanding", "ModelGroup", "PeakEwmaP2C",
           "RoundRobin", "Router"]
