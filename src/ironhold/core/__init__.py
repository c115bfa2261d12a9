"""The request's context, the stage protocol, the pipeline builder and the error hierarchy."""

from ironhold.core.errors import (
    ArtifactIntegrityError,
    AuthenticationError,
    BadGatewayError,
    ConfigError,
    InvalidRequestError,
    IronholdError,
    ModelNotFoundError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    UpstreamError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from ironhold.core.exchange import Exchange, Operation, Reply
from ironhold.core.pipeline import Handler, Stage, build_pipeline

__all__ = [
    "ArtifactIntegrityError",
    "AuthenticationError",
    "BadGatewayError",
    "ConfigError",
    "Exchange",
    "Handler",
    "InvalidRequestError",
    "IronholdError",
    "ModelNotFoundError",
    "NotFoundError",
    "Operation",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "Reply",
    "Stage",
    "UpstreamError",
    "UpstreamTimeoutError",
    "UpstreamUnavailableError",
    "build_pipeline",
]
