"""Ironhold's one exception hierarchy.

Core code raises these; the OpenAI codec (``core.codec``) gives each its status and error body,
and only ``api/`` sends them.
A stream that already began cannot change its status: it ends with an error event
(``core.codec.error_event``).

    IronholdError
    ├── ConfigError                  the config file is invalid (names file, field path, problem)
    ├── ArtifactIntegrityError       a model file does not match its pinned digest
    ├── InvalidRequestError          the request is malformed or has invalid fields
    │   ├── PayloadTooLargeError     the request body is over the configured limit
    │   ├── RequestTimeoutError      the request body did not arrive in time
    │   └── GuardBlockedError        the guard found an attack or a leak and blocks it
    ├── AuthenticationError          no credential, or one that is unknown, revoked or expired
    ├── PermissionDeniedError        a valid identity that may not do this
    ├── NotFoundError                no such thing (a key, a route)
    │   └── ModelNotFoundError       no model group of that name
    ├── RateLimitedError             too many requests: come back after ``retry_after`` seconds
    │   └── OverloadedError          a bulkhead is full (shed rather than queued)
    ├── AuditUnavailableError        the audit log cannot record the request, so it is not answered
    ├── GuardUnavailableError        a guard scanner failed and the guard fails closed
    └── UpstreamError                the model servers could not answer
        ├── BadGatewayError          an upstream answered with garbage or failed mid-way
        ├── UpstreamUnavailableError no deployment could be reached or all failed
        ├── UpstreamTimeoutError     a deadline passed before the upstream answered
        ├── UpstreamThrottledError   an upstream answered 429 (the router retries elsewhere)
        └── ToolServerError          a tool server refused a call with a JSON-RPC error of its own
"""

from __future__ import annotations


class IronholdError(Exception):
    """Base of every error Ironhold raises on purpose."""

    #: A stable machine-readable code (the OpenAI error body's ``code``).
    code: str = "internal_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code


class ConfigError(IronholdError):
    code = "invalid_config"


class ArtifactIntegrityError(IronholdError):
    code = "artifact_integrity"


class InvalidRequestError(IronholdError):
    code = "invalid_request"


class PayloadTooLargeError(InvalidRequestError):
    code = "payload_too_large"


class RequestTimeoutError(InvalidRequestError):
    code = "request_timeout"


class GuardBlockedError(InvalidRequestError):
    code = "guard_blocked"

    def __init__(self, message: str, *, category: str, owasp: str):
        super().__init__(message)
        self.category = category
        self.owasp = owasp


class AuthenticationError(IronholdError):
    code = "invalid_api_key"


class PermissionDeniedError(IronholdError):
    code = "permission_denied"


class NotFoundError(IronholdError):
    code = "not_found"


class ModelNotFoundError(NotFoundError):
    code = "model_not_found"


class RateLimitedError(IronholdError):
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: float, code: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message, code=code)
        self.retry_after = retry_after
        #: Extra response headers (``x-ratelimit-*``).
        self.headers = headers or {}


class OverloadedError(RateLimitedError):
    code = "overloaded"


class UpstreamError(IronholdError):
    code = "upstream_error"


class BadGatewayError(UpstreamError):
    code = "bad_gateway"


class UpstreamUnavailableError(UpstreamError):
    code = "upstream_unavailable"


class UpstreamTimeoutError(UpstreamError):
    code = "upstream_timeout"


class UpstreamThrottledError(UpstreamError):
    code = "upstream_rate_limited"

    def __init__(self, message: str, *, retry_after: float | None, body: bytes = b""):
        super().__init__(message)
        self.retry_after = retry_after
        self.body = body


class ToolServerError(UpstreamError):
    """An MCP tool server answered a request with a JSON-RPC error: passed on to the agent
    with the server's code and message."""

    code = "tool_server_error"

    def __init__(self, message: str, *, rpc_code: int, code: str | None = None):
        super().__init__(message, code=code)
        self.rpc_code = rpc_code


class AuditUnavailableError(IronholdError):
    code = "audit_unavailable"


class GuardUnavailableError(IronholdError):
    code = "guard_unavailable"
