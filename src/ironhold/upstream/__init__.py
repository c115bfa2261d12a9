"""Transports to model servers, and the managed local model server."""

from ironhold.upstream.transport import Transport, UpstreamRequest, UpstreamResponse

__all__ = ["Transport", "UpstreamRequest", "UpstreamResponse"]
