"""The router: the pipeline's terminal handler.

It picks a deployment of the requested group, sends the request through that deployment's
transport and fails over to another deployment on connect errors, timeouts and 5xx, but only
before the commit point: once a byte has gone to the client nothing is tried again. For streams
the commit point is the first chunk, which the router reads before it returns the reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Mapping

import orjson

from ironhold.core.errors import (
    BadGatewayError,
    IronholdError,
    ModelNotFoundError,
    UpstreamError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from ironhold.core.exchange import Exchange, Reply
from ironhold.routing.balancer import LeastOutstandingP2C
from ironhold.routing.deployment import Deployment, ModelGroup
from ironhold.telemetry.metrics import Metrics
from ironhold.upstream.transport import UpstreamRequest, UpstreamResponse

log = logging.getLogger("ironhold.routing")

#: Upstream response headers worth passing to the client.
_PASS_HEADERS = ("retry-after", "x-ratelimit-limit-requests", "x-ratelimit-remaining-requests")
_MAX_ERROR_BODY = 64 * 1024
#: Upstream answers that say the gateway is misconfigured (its credential, the upstream model
#: name or path), not that the client erred: never passed on as if they were the client's fault.
_MISCONFIGURED = {401: "refused the gateway's credentials", 403: "refused the gateway's access",
                  404: "does not know the model or path the gateway asked for"}


class Router:
    def __init__(
        self,
        groups: Mapping[str, ModelGroup],
        metrics: Metrics,
        balancer: LeastOutstandingP2C | None = None,
    ):
        self.groups = dict(groups)
        self._metrics = metrics
        self._balancer = balancer or LeastOutstandingP2C()

    def group(self, name: str) -> ModelGroup:
        group = self.groups.get(name)
        if group is None:
            raise ModelNotFoundError(
                f"The model '{name}' does not exist or you do not have access to it.",
                param="model",
            )
        return group

    async def __call__(self, exchange: Exchange) -> Reply:
        group = self.group(exchange.model)
        tried: list[Deployment] = []
        last_error: IronholdError | None = None
        headers = {"X-Request-Id": exchange.request_id}
        while True:
            deployment = self._balancer.pick(group.deployments, exclude=tried)
            if deployment is None:
                break
            tried.append(deployment)
            exchange.attempts += 1
            body = dict(exchange.body)
            body["model"] = deployment.upstream_model
            request = UpstreamRequest(
                path=exchange.operation.upstream_path,
                body=orjson.dumps(body),
                stream=exchange.stream,
                deadlines=group.deadlines,
                headers=headers,
            )
            deployment.outstanding += 1
            try:
                reply = await self._attempt(exchange, deployment, request)
            except UpstreamError as exc:
                deployment.outstanding -= 1
                deployment.record_failure()
                self._metrics.upstream_attempt(group.name, deployment.name, exc.code)
                log.warning("upstream attempt failed", extra={
                    "request_id": exchange.request_id, "model": group.name,
                    "deployment": deployment.name, "attempt": exchange.attempts,
                    "error": exc.code, "detail": exc.message})
                last_error = exc
                continue
            except BaseException:
                deployment.outstanding -= 1
                raise
            exchange.deployment = deployment.name
            reply.headers["x-ironhold-deployment"] = deployment.name
            return reply
        raise _exhausted(last_error, len(tried))

    async def _attempt(
        self, exchange: Exchange, deployment: Deployment, request: UpstreamRequest
    ) -> Reply:
        """One try. Raises ``UpstreamError`` for anything worth trying elsewhere."""
        response = await deployment.transport.send(request)
        try:
            status = response.status
            if status >= 500 or status in _MISCONFIGURED:
                detail = await _bounded_read(response)
                what = _MISCONFIGURED.get(status, "answered")
                raise BadGatewayError(
                    f"the model server {what} ({status}){_error_hint(detail)}"
                )
            passed = {h: response.headers[h] for h in _PASS_HEADERS if h in response.headers}
            is_sse = response.headers.get("content-type", "").startswith("text/event-stream")
            # A server that ignored "stream" and answered whole is passed on whole, as JSON.
            if not exchange.stream or status != 200 or not is_sse:
                body = await response.read()
                deployment.outstanding -= 1
                deployment.record_success()
                self._metrics.upstream_attempt(exchange.model, deployment.name, str(status))
                return Reply(status=status, body=_as_openai_body(status, body), headers=passed)
            chunks = response.chunks()
            first = await _first_chunk(chunks, request.deadlines.first_token)
        except BaseException:
            response.close()
            raise
        exchange.first_token_at = time.perf_counter()
        deployment.record_success()
        self._metrics.upstream_attempt(exchange.model, deployment.name, "200")
        return Reply(
            status=200,
            stream=_Relay(first, chunks, response, deployment),
            headers=passed,
            content_type="text/event-stream",
        )


async def _first_chunk(chunks: AsyncGenerator[bytes, None], deadline: float) -> bytes:
    try:
        async with asyncio.timeout(deadline):
            first = await anext(chunks, b"")
    except TimeoutError as exc:
        raise UpstreamTimeoutError("no first token from the model server in time") from exc
    if not first:
        raise BadGatewayError("the model server closed the stream before the first token")
    return first


class _Relay:
    """The stream after the commit point, chunk by chunk, never buffered whole. A failure now
    ends the stream with an error event in the OpenAI shape instead of raising, and ``aclose``
    releases the deployment and the upstream connection exactly once."""

    __slots__ = ("_at_boundary", "_chunks", "_closed", "_deployment", "_first", "_response")

    def __init__(
        self,
        first: bytes,
        chunks: AsyncGenerator[bytes, None],
        response: UpstreamResponse,
        deployment: Deployment,
    ):
        self._first: bytes | None = first
        self._chunks = chunks
        self._response = response
        self._deployment = deployment
        self._at_boundary = True
        self._closed = False

    def __aiter__(self) -> _Relay:
        return self

    async def __anext__(self) -> bytes:
        if self._first is not None:
            chunk, self._first = self._first, None
        elif self._closed:
            raise StopAsyncIteration
        else:
            try:
                chunk = await anext(self._chunks)
            except IronholdError as exc:
                self._deployment.record_failure()
                await self.aclose()
                error = {"error": {"message": exc.message, "type": "upstream_error",
                                   "param": None, "code": exc.code}}
                lead = b"" if self._at_boundary else b"\n\n"
                return lead + b"data: " + orjson.dumps(error) + b"\n\n"
            except StopAsyncIteration:
                await self.aclose()
                raise
        self._at_boundary = chunk.endswith(b"\n\n")
        return chunk

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._deployment.outstanding -= 1
        self._response.close()
        with contextlib.suppress(Exception):
            await self._chunks.aclose()


async def _bounded_read(response: UpstreamResponse) -> bytes:
    try:
        return (await response.read())[:_MAX_ERROR_BODY]
    except UpstreamError:
        return b""


def _error_hint(body: bytes) -> str:
    try:
        message = orjson.loads(body)["error"]["message"]
    except Exception:
        return ""
    return f": {str(message)[:200]}" if message else ""


def _as_openai_body(status: int, body: bytes) -> bytes:
    """Upstream success bodies pass through untouched; error bodies are made OpenAI-shaped."""
    if status < 400:
        return body
    try:
        parsed = orjson.loads(body)
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
            error = parsed["error"]
            return orjson.dumps({"error": {
                "message": str(error.get("message") or "upstream error"),
                "type": str(error.get("type") or "invalid_request_error"),
                "param": error.get("param"),
                "code": error.get("code"),
            }})
    except orjson.JSONDecodeError:
        pass
    text = body.decode("utf-8", "replace").strip()[:500] or f"upstream status {status}"
    return orjson.dumps({"error": {"message": text, "type": "invalid_request_error",
                                   "param": None, "code": f"upstream_{status}"}})


def _exhausted(last_error: IronholdError | None, attempts: int) -> UpstreamError:
    if isinstance(last_error, UpstreamTimeoutError | BadGatewayError):
        plural = "s" if attempts != 1 else ""
        return type(last_error)(f"{last_error.message} (after {attempts} attempt{plural})")
    reason = last_error.message if last_error else "no deployment is available"
    return UpstreamUnavailableError(f"all deployments failed: {reason}")
