"""A ``Deployment`` (one place a model group is served from) and a ``ModelGroup``."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ironhold.upstream.transport import Deadlines, Transport

#: After a failure, a deployment is passed over for this long if a healthy one exists.
FAILURE_COOLDOWN_S = 5.0


@dataclass(eq=False)
class Deployment:
    name: str
    group: str
    upstream_model: str
    transport: Transport
    weight: float = 1.0
    #: False while a managed local server is starting or restarting.
    available: bool = True
    outstanding: int = 0
    consecutive_failures: int = 0
    last_failure: float = 0.0

    @property
    def healthy(self) -> bool:
        if not self.available:
            return False
        return (
            self.consecutive_failures == 0
            or time.monotonic() - self.last_failure > FAILURE_COOLDOWN_S
        )

    def record_success(self) -> None:
        self.consecutive_failures = 0

    def record_failure(self) -> None:
        self.consecutive_failures += 1
        self.last_failure = time.monotonic()


@dataclass(eq=False)
class ModelGroup:
    name: str
    deployments: list[Deployment]
    deadlines: Deadlines
    owned_by: str = "ironhold"
    created: int = field(default_factory=lambda: int(time.time()))
