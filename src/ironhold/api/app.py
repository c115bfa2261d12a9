"""The aiohttp application: routes, the edge middleware, and the OpenAI handlers."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ironhold.api.admin import add_admin_routes
from ironhold.api.context import (
    PROCESS_GROUP,
    REQUEST_ID,
    SERVING,
    gateway_of,
    request_id_of,
    serving_of,
)
from ironhold.api.errors import error_response, plain_error
from ironhold.api.mcp import add_mcp_routes
from ironhold.api.oauth import add_oauth_routes
from ironhold.api.process_group import TEXT_FORMAT, ProcessGroup
from ironhold.api.requests import parse_json_object, parse_timeout_header, read_body
from ironhold.api.responses import json_response
from ironhold.bootstrap import Gateway
from ironhold.chaos.stage import HEADER as FAULT_HEADER
from ironhold.core.codec import check_request
from ironhold.core.delivery import Delivery
from ironhold.core.errors import (
    AuthenticationError,
    IronholdError,
    ModelNotFoundError,
    PermissionDeniedError,
)
from ironhold.core.exchange import Exchange, Operation, Principal, Reply
from ironhold.core.ids import accept_request_id
from ironhold.routing.group import ModelGroup
from ironhold.serving import Serving

log = logging.getLogger("ironhold.api")

#: The status already sent, once a streamed response has started.
_SENT_STATUS = web.RequestKey("sent_status", int)
#: nginx's convention for "the client closed the connection before an answer".
_CLIENT_CLOSED = 499

#: Per-request deadlines a client may ask for (shorter than the group's, never longer).
_TIMEOUT = "x-ironhold-timeout"
_FIRST_TOKEN_TIMEOUT = "x-ironhold-first-token-timeout"

_HttpHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_app(gateway: Gateway | Serving) -> web.Application:
    """The HTTP application over a gateway (or a ``Serving``, to reload it later)."""
    serving = gateway if isinstance(gateway, Serving) else Serving.of(gateway)
    app = web.Application(
        middlewares=[_edge],
        # Reading is bounded in read_body; this is aiohttp's own backstop.
        client_max_size=serving.current.config.server.max_body_bytes + 1,
    )
    app[SERVING] = serving
    app[PROCESS_GROUP] = ProcessGroup.from_env()
    app.router.add_post("/v1/chat/completions", _operation(Operation.CHAT))
    app.router.add_post("/v1/completions", _operation(Operation.COMPLETION))
    app.router.add_post("/v1/embeddings", _operation(Operation.EMBEDDING))
    app.router.add_get("/v1/models", _list_models)
    app.router.add_get("/v1/models/{model:.+}", _get_model)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    add_admin_routes(app)
    add_oauth_routes(app)
    add_mcp_routes(app)

    async def on_startup(_: web.Application) -> None:
        await serving.current.start()
        group = app[PROCESS_GROUP]
        if group is not None:
            await group.start(lambda: serving.current.metrics.exposition("")[0])

    async def on_cleanup(_: web.Application) -> None:
        group = app[PROCESS_GROUP]
        if group is not None:
            await group.stop()
        await serving.close()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app


@web.middleware
async def _edge(request: web.Request, handler: _HttpHandler) -> web.StreamResponse:
    """Request ids on every response, and every error in the OpenAI shape; never a stack trace."""
    request_id = accept_request_id(request.headers.get("x-request-id"))
    request[REQUEST_ID] = request_id
    status = _CLIENT_CLOSED
    try:
        response = await _respond(request, handler, request_id)
        status = response.status
        return response
    finally:
        # Counted even when a client disconnect cancels the handler mid-stream.
        if status == _CLIENT_CLOSED:
            status = request.get(_SENT_STATUS, _CLIENT_CLOSED)
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        gateway_of(request).metrics.request(route, status)


async def _respond(request: web.Request, handler: _HttpHandler,
                   request_id: str) -> web.StreamResponse:
    try:
        response = await handler(request)
    except IronholdError as exc:
        return error_response(exc, request_id)
    except web.HTTPException as exc:
        if exc.status == 404:
            return plain_error(404, f"Unknown route: {request.method} {request.path}",
                               "not_found", request_id)
        if exc.status == 405:
            return plain_error(405, f"Method {request.method} is not allowed on {request.path}",
                               "method_not_allowed", request_id)
        if exc.status == 413:
            return plain_error(413, "The request body is too large.", "payload_too_large",
                               request_id)
        if exc.status < 400:
            raise
        return plain_error(exc.status, exc.reason, "http_error", request_id)
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        log.exception("unhandled error", extra={"request_id": request_id})
        return plain_error(500, f"Internal error (request id {request_id}).", "internal_error",
                           request_id)
    if not response.prepared:
        response.headers["x-request-id"] = request_id
    return response


def _operation(operation: Operation) -> _HttpHandler:
    async def handle(request: web.Request) -> web.StreamResponse:
        # The gateway current now serves this request to its end, whatever a reload swaps in.
        gateway = gateway_of(request)
        gateway.enter()
        try:
            return await _serve(gateway, request, operation)
        finally:
            gateway.leave()

    return handle


async def _serve(gateway: Gateway, request: web.Request,
                 operation: Operation) -> web.StreamResponse:
    server = gateway.config.server
    raw = await read_body(request, server.max_body_bytes, server.body_timeout)
    body = parse_json_object(raw)
    model, stream = check_request(operation, body)
    headers = request.headers
    exchange = Exchange(
        request_id=request_id_of(request),
        operation=operation,
        model=model,
        body=body,
        stream=stream,
        credential=headers.get("Authorization"),
        client_ip=request.remote or "0.0.0.0",
        config_version=gateway.version,
    )
    if _TIMEOUT in headers:
        exchange.timeout = parse_timeout_header(_TIMEOUT, headers[_TIMEOUT])
    if _FIRST_TOKEN_TIMEOUT in headers:
        exchange.first_token_timeout = parse_timeout_header(
            _FIRST_TOKEN_TIMEOUT, headers[_FIRST_TOKEN_TIMEOUT])
    exchange.fault_header = headers.get(FAULT_HEADER)
    if gateway.tracer is not None:
        exchange.traceparent = headers.get("traceparent")
        exchange.tracestate = headers.get("tracestate")
    if gateway.audit is not None:
        exchange.body_sha256 = hashlib.sha256(raw).hexdigest()
    reply = await gateway.handle(exchange)
    reply.headers.setdefault("x-ironhold-model", model)
    if reply.events is None:
        return web.Response(status=reply.status, body=reply.payload(),
                            content_type="application/json", headers=reply.headers)
    return await _send_stream(request, reply)


async def _send_stream(request: web.Request, reply: Reply) -> web.StreamResponse:
    delivery = Delivery(reply)
    # Sent before the middleware sees the response, so the request id goes on here.
    reply.headers["x-request-id"] = request[REQUEST_ID]
    response = web.StreamResponse(status=reply.status, headers=reply.headers)
    response.content_type = "text/event-stream"
    response.headers["Cache-Control"] = "no-cache"
    finished = False
    try:
        await response.prepare(request)
        request[_SENT_STATUS] = reply.status
        async for data in delivery:
            await response.write(data)
        finished = True
        await delivery.aclose()
        await response.write_eof()
    except ConnectionResetError:
        pass  # the client went away; closing the stream below cancels the upstream request
    finally:
        # Also on cancellation (client disconnect): release the upstream connection, end the
        # observers. Shielded so a second cancellation cannot cut the clean-up short.
        with contextlib.suppress(Exception):
            await asyncio.shield(delivery.aclose(client_gone=not finished))
    return response


async def _list_models(request: web.Request) -> web.Response:
    gateway = gateway_of(request)
    principal = await gateway.authenticator.authenticate(request.headers.get("Authorization"))
    data = [
        _model_object(name, group)
        for name, group in gateway.router.groups.items()
        if _may_list(gateway, principal, name, request)
    ]
    return json_response({"object": "list", "data": data})


async def _get_model(request: web.Request) -> web.Response:
    gateway = gateway_of(request)
    principal = await gateway.authenticator.authenticate(request.headers.get("Authorization"))
    name = request.match_info["model"]
    if not _may_list(gateway, principal, name, request):
        raise ModelNotFoundError(
            f"The model '{name}' does not exist or you do not have access to it.", param="model"
        )
    group = gateway.router.group(name)
    return json_response(_model_object(name, group))


async def _healthz(_: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def _readyz(request: web.Request) -> web.Response:
    gateway = gateway_of(request)
    draining = serving_of(request).draining
    ready = gateway.ready() and not draining
    answer: dict[str, Any] = {"status": "draining" if draining else
                              "ready" if ready else "not_ready"}
    if await _may_see_internals(gateway, request, required=False):
        answer["models"] = {
            name: [{"deployment": d.name, "available": d.available, "healthy": d.healthy}
                   for d in group.deployments]
            for name, group in gateway.router.groups.items()
        }
    return json_response(answer, status=200 if ready else 503)


async def _metrics(request: web.Request) -> web.Response:
    gateway = gateway_of(request)
    await _may_see_internals(gateway, request, required=True)
    group = request.app.get(PROCESS_GROUP)
    if group is not None:  # every worker's series, in Prometheus' text format
        own, _ = await asyncio.to_thread(gateway.metrics.exposition, "")
        return web.Response(body=await group.exposition(own),
                            headers={"Content-Type": TEXT_FORMAT})
    # Off the loop: a scrape writes every series, and /healthz must not wait for it.
    body, content_type = await asyncio.to_thread(gateway.metrics.exposition,
                                                 request.headers.get("Accept", ""))
    return web.Response(body=body, headers={"Content-Type": content_type})


async def _may_see_internals(gateway: Gateway, request: web.Request, required: bool) -> bool:
    """``server.internals``: public, or an admin credential. ``required``: refuse (401/403)
    instead of answering False."""
    if gateway.config.server.internals == "public":
        return True
    authorization = request.headers.get("Authorization")
    if not required and not authorization:
        return False
    try:
        principal = await gateway.authenticator.authenticate(authorization)
    except AuthenticationError:
        if required:
            raise
        return False
    if not principal.admin:
        if required:
            raise PermissionDeniedError("This endpoint needs an admin identity "
                                        "(server.internals: admin).")
        return False
    return True


def _may_list(gateway: Gateway, principal: Principal, model: str,
              request: web.Request) -> bool:
    if not principal.may_use(model):
        return False
    if gateway.authorizer is None:
        return True
    return gateway.authorizer.check(principal, "list_models", "Model", model,
                                request.remote or "0.0.0.0").allowed


def _model_object(name: str, group: ModelGroup) -> dict[str, Any]:
    """OpenAI's model object, with what serves it as an extra field: each deployment's
    ``version`` label and verified file ``digest`` (managed local models)."""
    return {"id": name, "object": "model", "created": group.created, "owned_by": group.owned_by,
            "deployments": [{"name": d.name, "version": d.version, "digest": d.digest}
                            for d in group.rotation]}
