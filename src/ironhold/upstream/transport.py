"""The upstream transport seam: the only way the router talks to a model server.

Retries, hedging, breakers and fault injection wrap a ``Transport``; tests and benchmarks plug
in the simulator behind the real HTTP transport.

Errors: a transport raises ``UpstreamUnavailableError`` when it cannot reach the server (safe to
try elsewhere), ``UpstreamTimeoutError`` when a deadline passes, and ``BadGatewayError`` when
the server breaks the protocol. An HTTP error status is not an exception: it is a response.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ironhold.config.schema import FaultConfig


@dataclass(frozen=True, slots=True)
class Deadlines:
    connect: float
    first_token: float
    total: float


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    path: str  # e.g. "/chat/completions", appended to the deployment's base URL
    body: bytes
    stream: bool
    deadlines: Deadlines
    headers: Mapping[str, str] = field(default_factory=dict)
    #: Faults to inject for this request (chaos), applied by ``chaos.FaultTransport``.
    faults: tuple[FaultConfig, ...] = ()


class UpstreamResponse(Protocol):
    status: int
    headers: Mapping[str, str]

    async def read(self) -> bytes:
        """The whole body (non-streaming responses and error bodies)."""
        ...

    def chunks(self) -> AsyncGenerator[bytes, None]:
        """The body as it arrives, for streams."""
        ...

    def close(self) -> None:
        """Release the connection; closes it if the body was not read to the end."""
        ...


class Transport(Protocol):
    async def send(self, request: UpstreamRequest) -> UpstreamResponse: ...

    async def check(self, path: str, within: float) -> bool:
        """An active health check: True if ``GET path`` answers 2xx within ``within`` seconds."""
        ...

    async def close(self) -> None: ...
