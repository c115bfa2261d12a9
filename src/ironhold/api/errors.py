"""Domain errors as aiohttp responses, in the OpenAI shape the codec gives them."""

from __future__ import annotations

import math

from aiohttp import web

from ironhold.core import errors
from ironhold.core.codec import error_body, error_json, status_of


def error_response(exc: errors.IronholdError, request_id: str) -> web.Response:
    status, _ = status_of(exc)
    headers = {"x-request-id": request_id}
    if isinstance(exc, errors.RateLimitedError):
        headers.update(exc.headers)
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    elif status == 503:
        headers["Retry-After"] = "1"
    return web.Response(status=status, body=error_body(exc), content_type="application/json",
                        headers=headers)


def plain_error(status: int, message: str, code: str, request_id: str) -> web.Response:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return web.Response(
        status=status,
        body=error_json(message, kind, code),
        content_type="application/json",
        headers={"x-request-id": request_id},
    )
