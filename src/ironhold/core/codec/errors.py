"""Errors on the wire: the HTTP status and OpenAI ``type`` of each domain error, the error body
``{"error": {...}}``, and the error event that ends a stream which already began."""

from __future__ import annotations

import orjson

from ironhold.core import errors

__all__ = ["error_body", "error_event", "status_of"]

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
    """The HTTP status and the OpenAI error ``type`` for ``exc``."""
    for cls, status, kind in _STATUS:
        if isinstance(exc, cls):
            return status, kind
    return 500, "server_error"


def error_body(exc: errors.IronholdError) -> bytes:
    return error_json(exc.message, status_of(exc)[1], exc.code, exc.param)


def error_json(message: str, kind: str, code: str | None, param: str | None = None) -> bytes:
    return orjson.dumps(
        {"error": {"message": message, "type": kind, "param": param, "code": code}})


def error_event(exc: errors.IronholdError) -> bytes:
    """The server-sent event that ends a stream which already began, with ``exc`` in OpenAI's
    error shape: the ``openai`` SDK raises it as ``APIError``."""
    return b"data: " + error_body(exc) + b"\n\n"
