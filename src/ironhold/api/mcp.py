"""The MCP endpoint: Ironhold as an MCP server over Streamable HTTP at ``/mcp``, federating the
tool servers in ``mcp.servers`` (``mcp.gateway.ToolGateway`` decides; this module speaks the
protocol).

- ``POST /mcp`` takes one JSON-RPC message. Requests are answered with JSON, or with an SSE
  stream when the call asked for progress (``_meta.progressToken``): its progress
  notifications, then the answer. Notifications and responses get 202.
- ``initialize`` opens a session (``Mcp-Session-Id``, signed, bound to the caller); every later
  request must carry it. ``DELETE /mcp`` ends it. ``GET /mcp`` is 405: the gateway sends
  nothing unasked.
- ``notifications/cancelled`` cancels a call in flight (on the worker serving it); a client
  that disconnects cancels its call too. Either way the tool server is told.
- Every request carries an Ironhold credential. Without one: 401 with
  ``WWW-Authenticate: Bearer resource_metadata=...`` pointing at the protected resource
  metadata (RFC 9728), ``GET /.well-known/oauth-protected-resource``. OIDC tokens must name
  this resource in ``aud`` (RFC 8707). Client tokens never go upstream.

Protocol versions: the handshake era (``2025-11-25`` and earlier). A 2026 client asks
``server/discover`` first, gets "method not found", and falls back to ``initialize``, as the
specification has it.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any
from urllib.parse import urlsplit

import orjson
from aiohttp import web

from ironhold import __version__
from ironhold.api.context import gateway_of, request_id_of
from ironhold.api.errors import error_response
from ironhold.api.requests import read_body
from ironhold.api.responses import json_response
from ironhold.bootstrap import Gateway
from ironhold.core.codec import status_of
from ironhold.core.errors import (
    AuthenticationError,
    GuardBlockedError,
    InvalidRequestError,
    IronholdError,
    NotFoundError,
    RateLimitedError,
    ToolServerError,
)
from ironhold.core.principal import Principal
from ironhold.mcp.connection import PROTOCOL_VERSIONS
from ironhold.mcp.gateway import ToolCall, ToolGateway
from ironhold.mcp.sessions import Session

__all__ = ["add_mcp_routes"]

SUPPORTED_VERSIONS = PROTOCOL_VERSIONS
LATEST = SUPPORTED_VERSIONS[0]
_SESSION = "Mcp-Session-Id"
_VERSION = "MCP-Protocol-Version"
#: JSON-RPC's own codes, and the ones this server adds for refusals (data says which).
PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS, INTERNAL = (
    -32700, -32600, -32601, -32602, -32603)
DENIED, RATE_LIMITED, BLOCKED, UNAVAILABLE, CANCELLED = -32003, -32029, -32004, -32005, -32800
_METADATA_PATH = "/.well-known/oauth-protected-resource"


def add_mcp_routes(app: web.Application) -> None:
    app.router.add_post("/mcp", _post)
    app.router.add_get("/mcp", _get)
    app.router.add_delete("/mcp", _delete)
    app.router.add_get(_METADATA_PATH, _resource_metadata)
    app.router.add_get(_METADATA_PATH + "/mcp", _resource_metadata)


def _tools(gateway: Gateway) -> ToolGateway:
    if gateway.tools is None:
        raise NotFoundError("The MCP tool gateway is off (no mcp.servers in the config).",
                            code="mcp_disabled")
    return gateway.tools


def resource_uri(gateway: Gateway, request: web.Request) -> str:
    """This endpoint's canonical URI: ``mcp.resource``, or the URL it was reached at."""
    return gateway.config.mcp.resource or f"{request.scheme}://{request.host}/mcp"


async def _resource_metadata(request: web.Request) -> web.Response:
    """RFC 9728: who this resource is, and where its tokens come from."""
    gateway = gateway_of(request)
    _tools(gateway)
    mcp = gateway.config.mcp
    servers = list(mcp.authorization_servers)
    if not servers and gateway.config.identity.jwt is not None:
        servers = [gateway.config.identity.jwt.issuer]
    return json_response({
        "resource": resource_uri(gateway, request),
        "authorization_servers": servers,
        "bearer_methods_supported": ["header"],
        "resource_name": "Ironhold MCP tool gateway",
        "scopes_supported": sorted({f"tools:{name}" for name in _tools(gateway)
                                    .catalogue.tools}),
    })


async def _authenticate(gateway: Gateway, request: web.Request) -> Principal:
    return await gateway.authenticator.authenticate(request.headers.get("Authorization"),
                                                    audience=resource_uri(gateway, request))


def _unauthorized(gateway: Gateway, request: web.Request, exc: AuthenticationError
                  ) -> web.Response:
    response = error_response(exc, request_id_of(request))
    metadata = f"{request.scheme}://{request.host}{_METADATA_PATH}/mcp"
    if gateway.config.mcp.resource:
        parts = urlsplit(gateway.config.mcp.resource)
        metadata = f"{parts.scheme}://{parts.netloc}{_METADATA_PATH}{parts.path}"
    error = "invalid_token" if request.headers.get("Authorization") else "invalid_request"
    response.headers["WWW-Authenticate"] = (
        f'Bearer resource_metadata="{metadata}", error="{error}"')
    return response


def _check_origin(request: web.Request) -> None:
    """A browser page on another site must not drive a local gateway (DNS rebinding)."""
    origin = request.headers.get("Origin")
    if origin and urlsplit(origin).netloc != request.host:
        raise web.HTTPForbidden(reason="Origin not allowed")


async def _get(request: web.Request) -> web.Response:
    _tools(gateway_of(request))
    return web.Response(status=405, headers={"Allow": "POST, DELETE"})


async def _delete(request: web.Request) -> web.Response:
    gateway = gateway_of(request)
    tools = _tools(gateway)
    try:
        principal = await _authenticate(gateway, request)
    except AuthenticationError as exc:
        return _unauthorized(gateway, request, exc)
    session = tools.sessions.get(request.headers.get(_SESSION, ""), principal.id)
    tools.sessions.end(session)
    return web.Response(status=204)


async def _post(request: web.Request) -> web.StreamResponse:
    gateway = gateway_of(request)
    gateway.enter()
    try:
        tools = _tools(gateway)
        _check_origin(request)
        try:
            principal = await _authenticate(gateway, request)
        except AuthenticationError as exc:
            return _unauthorized(gateway, request, exc)
        server = gateway.config.server
        raw = await read_body(request, server.max_body_bytes, server.body_timeout)
        try:
            message = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return _rpc_error(None, PARSE_ERROR, "The body is not valid JSON.", status=400)
        if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
            return _rpc_error(None, INVALID_REQUEST,
                              "Send one JSON-RPC 2.0 message (an object) per request.",
                              status=400)
        method = message.get("method")
        if not isinstance(method, str):  # a response to a request of ours: we send none
            return web.Response(status=202)
        rpc_id = message.get("id")
        params = message.get("params") or {}
        if not isinstance(params, dict):
            return _rpc_error(rpc_id, INVALID_PARAMS, "'params' must be an object.",
                              status=400)
        if method == "initialize":
            return _initialize(tools, principal, rpc_id, params)
        session = tools.sessions.get(request.headers.get(_SESSION, ""), principal.id) \
            if _SESSION in request.headers else None
        if session is None and method != "server/discover" and method != "ping":
            raise InvalidRequestError(f"An {_SESSION} header is required (send initialize "
                                      "first).", code="session_required")
        version = request.headers.get(_VERSION)
        if version is not None and version not in SUPPORTED_VERSIONS:
            raise InvalidRequestError(f"Unsupported {_VERSION} {version[:40]!r}; supported: "
                                      f"{', '.join(SUPPORTED_VERSIONS)}.",
                                      code="unsupported_protocol_version")
        if "id" not in message:
            _notification(tools, session, method, params)
            return web.Response(status=202)
        return await _request(request, tools, principal, session, rpc_id, method, params)
    finally:
        gateway.leave()


def _initialize(tools: ToolGateway, principal: Principal, rpc_id: Any,
                params: dict[str, Any]) -> web.Response:
    asked = params.get("protocolVersion")
    version = asked if asked in SUPPORTED_VERSIONS else LATEST
    session = tools.sessions.open(principal.id, version)
    result = {
        "protocolVersion": version,
        "capabilities": {"tools": {"listChanged": False}, "resources": {}, "prompts": {}},
        "serverInfo": {"name": "ironhold", "title": "Ironhold MCP tool gateway",
                       "version": __version__},
        "instructions": "Tools are named server.tool. Every call is decided by policy, "
                        "guarded both ways and audited.",
    }
    response = _rpc_result(rpc_id, result)
    response.headers[_SESSION] = session.id
    return response


def _notification(tools: ToolGateway, session: Session | None, method: str,
                  params: dict[str, Any]) -> None:
    if method == "notifications/cancelled" and session is not None:
        key = (session.id, _key(params.get("requestId")))
        task = tools.in_flight.get(key)
        if task is not None:
            tools.cancelled.add(key)
            task.cancel()


async def _request(request: web.Request, tools: ToolGateway, principal: Principal,
                   session: Session | None, rpc_id: Any, method: str,
                   params: dict[str, Any]) -> web.StreamResponse:
    ip = request.remote or "0.0.0.0"
    try:
        if method == "ping":
            return _rpc_result(rpc_id, {})
        if method == "tools/list":
            return _rpc_result(rpc_id, {"tools": tools.list_tools(principal, ip)})
        if method == "resources/list":
            return _rpc_result(rpc_id, {"resources": tools.list_resources(principal, ip)})
        if method == "resources/templates/list":
            return _rpc_result(rpc_id, {"resourceTemplates": []})
        if method == "prompts/list":
            return _rpc_result(rpc_id, {"prompts": tools.list_prompts(principal, ip)})
        if method == "resources/read":
            uri = _string(params, "uri")
            return _rpc_result(rpc_id, await tools.read_resource(principal, uri, ip))
        if method == "prompts/get":
            arguments = params.get("arguments")
            if arguments is not None and not (isinstance(arguments, dict) and all(
                    isinstance(v, str) for v in arguments.values())):
                raise InvalidRequestError("'arguments' must map names to strings.",
                                          param="arguments")
            return _rpc_result(rpc_id, await tools.get_prompt(
                principal, _string(params, "name"), arguments, ip))
        if method == "logging/setLevel":
            return _rpc_result(rpc_id, {})
        if method == "tools/call":
            return await _call(request, tools, principal, session, rpc_id, params)
        return _rpc_error(rpc_id, METHOD_NOT_FOUND, f"Method {method[:100]!r} not found.")
    except IronholdError as exc:
        return _rpc_error(rpc_id, *_rpc_of(exc))


async def _call(request: web.Request, tools: ToolGateway, principal: Principal,
                session: Session | None, rpc_id: Any,
                params: dict[str, Any]) -> web.StreamResponse:
    name = _string(params, "name")
    arguments = params.get("arguments") or {}
    if not isinstance(arguments, dict):
        raise InvalidRequestError("'arguments' must be an object.", param="arguments")
    meta = params.get("_meta")
    token = meta.get("progressToken") if isinstance(meta, dict) else None
    call = ToolCall(request_id=request_id_of(request), principal=principal,
                    client_ip=request.remote or "0.0.0.0", name=name, arguments=arguments,
                    session=session.digest if session else None)
    if not isinstance(token, str | int) or isinstance(token, bool):
        return _rpc_result(rpc_id, await _tracked(tools, session, rpc_id, call))
    # Progress asked for: an SSE stream of progress notifications, then the answer.
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache",
                                           "x-request-id": call.request_id})
    await response.prepare(request)

    async def report(progress: float, total: float | None, message: str | None) -> None:
        note: dict[str, Any] = {"progressToken": token, "progress": progress}
        if total is not None:
            note["total"] = total
        if message is not None:
            note["message"] = message
        await response.write(_event({"jsonrpc": "2.0", "method": "notifications/progress",
                                     "params": note}))

    call.progress = report
    try:
        answer = {"jsonrpc": "2.0", "id": rpc_id,
                  "result": await _tracked(tools, session, rpc_id, call)}
    except IronholdError as exc:
        answer = _error_message(rpc_id, *_rpc_of(exc))
    with contextlib.suppress(ConnectionResetError):
        await response.write(_event(answer))
        await response.write_eof()
    return response


async def _tracked(tools: ToolGateway, session: Session | None, rpc_id: Any,
                   call: ToolCall) -> dict[str, Any]:
    """The call, in this request's task, which ``notifications/cancelled`` can cancel."""
    task = asyncio.current_task()
    assert task is not None
    key = (session.id if session else "", _key(rpc_id))
    tools.in_flight[key] = task
    try:
        return await tools.call(call)
    except asyncio.CancelledError:
        if key in tools.cancelled:  # the client's own notification, not a disconnect
            task.uncancel()
            raise IronholdError("The request was cancelled.", code="cancelled") from None
        raise
    finally:
        tools.in_flight.pop(key, None)
        tools.cancelled.discard(key)


def _key(rpc_id: Any) -> str:
    return orjson.dumps(rpc_id).decode() if isinstance(rpc_id, str | int) else ""


def _string(params: dict[str, Any], name: str) -> str:
    value = params.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidRequestError(f"'{name}' is required (a string).", param=name)
    return value


def _rpc_of(exc: IronholdError) -> tuple[int, str, dict[str, Any]]:
    """A refusal or failure as a JSON-RPC error: its code, message, and in ``data`` the error
    as the OpenAI shape names it (type, code, param) and the HTTP status it stands for."""
    status, kind = status_of(exc)
    data: dict[str, Any] = {"type": kind, "code": exc.code, "status": status}
    if exc.param:
        data["param"] = exc.param
    if isinstance(exc, GuardBlockedError):
        data.update(category=exc.category, owasp=exc.owasp)
    # Most specific first: a guard block and an unknown tool are also a 400 and a 404.
    if isinstance(exc, ToolServerError):
        code = exc.rpc_code
    elif isinstance(exc, RateLimitedError):
        data["retry_after"] = round(exc.retry_after, 3)
        code = RATE_LIMITED
    elif isinstance(exc, GuardBlockedError):
        code = BLOCKED
    elif exc.code == "cancelled":
        code = CANCELLED
    elif status == 404 or (status == 400 and exc.param is not None):
        code = INVALID_PARAMS  # no such tool, prompt or resource; a parameter at fault
    elif status in (401, 403):
        code = DENIED
    elif status in (400, 413):
        code = INVALID_REQUEST
    else:
        code = UNAVAILABLE if status in (503, 504) else INTERNAL
    return code, exc.message, data


def _rpc_result(rpc_id: Any, result: dict[str, Any]) -> web.Response:
    return web.Response(body=orjson.dumps({"jsonrpc": "2.0", "id": rpc_id, "result": result}),
                        content_type="application/json")


def _rpc_error(rpc_id: Any, code: int, message: str, data: Any = None,
               status: int = 200) -> web.Response:
    return web.Response(status=status, content_type="application/json",
                        body=orjson.dumps(_error_message(rpc_id, code, message, data)))


def _error_message(rpc_id: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": rpc_id, "error": error}


def _event(message: dict[str, Any]) -> bytes:
    return b"event: message\ndata: " + orjson.dumps(message) + b"\n\n"
