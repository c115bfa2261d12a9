"""Fault injection at the upstream seam.

A ``FaultTransport`` wraps a deployment's real transport. Each attempt it is given draws, for
every fault that applies (the deployment's, its group's, and the request's own: from the API key
or an admin's ``x-ironhold-fault`` header), whether it fires (``percent``). Faults, as a model
server would misbehave:

- ``abort``: answer ``status`` (a 429 may carry ``retry_after``) without calling upstream;
- ``delay``: wait ``delay`` before the request goes upstream (a slow first token);
- ``slow``: wait ``delay`` before each chunk (slow tokens);
- ``cut``: break the stream after ``after_chunks`` events (a non-streaming body breaks);
- ``malformed``: a garbled event after ``after_chunks`` (a non-streaming body is cut short);
- ``reset``: the connection is reset before an answer;
- ``hang``: accept the request and never answer (until the attempt's deadline).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any

from ironhold.config.schema import FaultConfig
from ironhold.core.codec import error_json
from ironhold.core.errors import BadGatewayError, UpstreamTimeoutError, UpstreamUnavailableError
from ironhold.telemetry.metrics import Metrics
from ironhold.upstream.transport import Transport, UpstreamRequest, UpstreamResponse


class FaultTransport:
    def __init__(self, inner: Transport, deployment: str, faults: Sequence[FaultConfig],
                 metrics: Metrics, rng: random.Random | None = None):
        self.inner = inner
        self._deployment = deployment
        self._faults = tuple(faults)
        self._metrics = metrics
        self._rng = rng or random.Random()

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        if not self._faults and not request.faults:
            return await self.inner.send(request)
        fired = self._draw(request.faults)
        if not fired:
            return await self.inner.send(request)
        for fault in fired:
            self._metrics.fault(self._deployment, fault.kind)
        by_kind = {f.kind: f for f in fired}
        if "abort" in by_kind:
            return _aborted(by_kind["abort"])
        if "reset" in by_kind:
            raise UpstreamUnavailableError(
                "cannot reach the model server: connection reset (injected fault)")
        if "hang" in by_kind:
            await asyncio.sleep(request.deadlines.first_token if request.stream
                                else request.deadlines.total)
            raise UpstreamTimeoutError("the model server did not answer in time (injected hang)")
        if "delay" in by_kind:
            await asyncio.sleep(by_kind["delay"].delay)
        response = await self.inner.send(request)
        if by_kind.keys() & {"slow", "cut", "malformed"}:
            return _Faulty(response, by_kind)
        return response

    async def check(self, path: str, within: float) -> bool:
        return await self.inner.check(path, within)

    async def close(self) -> None:
        await self.inner.close()

    def _draw(self, extra: Sequence[FaultConfig]) -> list[FaultConfig]:
        fired = []
        for fault in (*self._faults, *extra):
            if fault.deployment is not None and fault.deployment != self._deployment:
                continue
            if fault.percent >= 100 or self._rng.random() * 100 < fault.percent:
                fired.append(fault)
        return fired


class _Aborted:
    def __init__(self, status: int, headers: Mapping[str, str], body: bytes):
        self.status = status
        self.headers = headers
        self._body = body

    async def read(self) -> bytes:
        return self._body

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        yield self._body

    def close(self) -> None:
        return None


def _aborted(fault: FaultConfig) -> _Aborted:
    headers = {"content-type": "application/json"}
    if fault.retry_after is not None:
        headers["retry-after"] = f"{fault.retry_after:g}"
    body = error_json(f"injected fault: status {fault.status}",
                      "server_error" if fault.status >= 500 else "invalid_request_error",
                      "injected_fault")
    return _Aborted(fault.status, headers, body)


class _Faulty:
    """A real response, made slow, cut or garbled."""

    def __init__(self, response: UpstreamResponse, faults: Mapping[Any, FaultConfig]):
        self._response = response
        self._faults = faults
        self.status = response.status
        self.headers = response.headers

    async def read(self) -> bytes:
        body = await self._response.read()
        if "slow" in self._faults:
            await asyncio.sleep(self._faults["slow"].delay)
        if "cut" in self._faults:
            raise BadGatewayError("the model server broke off its response (injected cut)")
        if "malformed" in self._faults:
            return body[: max(1, len(body) // 2)]
        return body

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        slow = self._faults.get("slow")
        cut = self._faults.get("cut")
        malformed = self._faults.get("malformed")
        sent = 0
        async for event in _events(self._response.chunks()):
            if cut is not None and sent >= cut.after_chunks:
                raise BadGatewayError("the model server broke off the stream (injected cut)")
            if malformed is not None and sent == malformed.after_chunks:
                sent += 1
                yield b'data: {"id": "garbled\n\n'
                continue
            if slow is not None and sent:
                await asyncio.sleep(slow.delay)
            sent += 1
            yield event

    def close(self) -> None:
        self._response.close()


async def _events(chunks: AsyncGenerator[bytes, None]) -> AsyncGenerator[bytes, None]:
    """Network chunks regrouped into whole SSE events, so faults count events (tokens)."""
    pending = b""
    async for chunk in chunks:
        pending += chunk
        *events, pending = pending.split(b"\n\n")
        for event in events:
            yield event + b"\n\n"
    if pending:
        yield pending
