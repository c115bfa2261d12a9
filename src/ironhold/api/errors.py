"""Domain errors to HTTP: the status and the OpenAI error body ``{"error": {...}}``."""

from __future__ import annotations

import math

import orjson
from aiohttp import web

from ironhold.core import errors

# Most specific first: the first matching class decides.
_STATUS: list[tuple[type[errors.IronholdError], int, str]] = [
    (errors.PayloadTooLargeError, 413, "invalid_request_error"),
    (errors.RequestTimeoutError, 408, "invalid_request_error"),
    (errors.InvalidRequestError, 400, "invalid_request_error"),
    (errors.AuthenticationError, 401, "invalid_request_error"),
    (errors.PermissionDeniedError, 403, "permission_error"),
    (errors.NotFoundError, 404, "invalid_request_error"),
    (errors.RateLimitedError, 429, "rate_limit_error"),
    (errors.UpstreamTimeoutError, 504, "upstream_error"),
    (errors.BadGatewayError, 502, "upstream_error"),
    (errors.UpstreamError, 503, "upstream_error"),
    (errors.AuditUnavailableError, 503, "server_error"),
    (errors.GuardUnavailableError, 503, "server_error"),
]


def status_of(exc: errors.IronholdError) -> tuple[int, str]:
    for cls, status, kind in _STATUS:
        if isinstance(exc, cls):
            return status, kind
    return 500, "server_error"


def error_body(message: str, kind: str, code: str | None, param: str | None = None) -> bytes:
    return orjson.dumps(
        {"error": {"message": message, "type": kind, "param": param, "code": code}}
    )


def error_response(exc: errors.IronholdError, request_id: str) -> web.Response:
    status, kind = status_of(exc)
    headers = {"x-request-id": request_id}
    if isinstance(exc, errors.RateLimitedError):
        headers.update(exc.headers)
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    elif status == 503:
        headers["Retry-After"] = "1"
    return web.Response(
        status=status,
        body=error_body(exc.message, kind, exc.code, exc.param),
        content_type="application/json",
        headers=headers,
    )


def plain_error(status: int, message: str, code: str, request_id: str) -> web.Response:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return web.Response(
        status=status,
        body=error_body(message, kind, code),
        content_type="application/json",
        headers={"x-request-id": request_id},
    )
