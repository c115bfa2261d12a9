"""An OpenAI-compatible model server with programmable latency and faults."""

from ironhold.simulator.profile import Fault, Latency, SimulatorProfile, load_profile
from ironhold.simulator.server import Simulator

__all__ = ["Fault", "Latency", "Simulator", "SimulatorProfile", "load_profile"]
