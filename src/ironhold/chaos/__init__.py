"""Chaos engineering: faults injected at the upstream seam, and experiments that prove the
resilience engine holds its steady state while they are."""

from ironhold.chaos.faults import FaultTransport
from ironhold.chaos.stage import ChaosStage

__all__ = ["ChaosStage", "FaultTransport"]
