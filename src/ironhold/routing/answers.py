"""Reading model-server answers: error bodies made OpenAI-shaped, Retry-After, and the answers
that hand a request to a fallback group."""

from __future__ import annotations

import orjson

from ironhold.config.schema import FallbackOnConfig
from ironhold.core.codec import error_json
from ironhold.core.errors import UpstreamError
from ironhold.core.exchange import Reply
from ironhold.upstream.transport import UpstreamResponse

MAX_ERROR_BODY = 64 * 1024
_CONTEXT_LENGTH_MARKERS = (b"context_length_exceeded", b"maximum context length",
                           b"context window", b"exceeds the context", b"too many tokens")
_CONTENT_FILTER_MARKERS = (b"content_filter", b"content_policy_violation")


def retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date: rare from model servers; the default applies
    return max(seconds, 0.0)


def fallback_reason(reply: Reply, on: FallbackOnConfig) -> str | None:
    """Whether an answer is one the group's ``fallback_on`` hands to the next group."""
    body = reply.body
    if body is None:
        return None
    if reply.status == 400:
        lowered = body.lower()
        if on.context_length and any(m in lowered for m in _CONTEXT_LENGTH_MARKERS):
            return "context_length"
        if on.content_filter and any(m in lowered for m in _CONTENT_FILTER_MARKERS):
            return "content_filter"
    elif reply.answer is not None and on.content_filter and b'"content_filter"' in body:
        choices = reply.answer.get("choices")
        if isinstance(choices, list) and any(
                isinstance(c, dict) and c.get("finish_reason") == "content_filter"
                for c in choices):
            return "content_filter"
    return None


async def bounded_read(response: UpstreamResponse) -> bytes:
    try:
        return (await response.read())[:MAX_ERROR_BODY]
    except UpstreamError:
        return b""


def error_hint(body: bytes) -> str:
    try:
        message = orjson.loads(body)["error"]["message"]
    except Exception:
        return ""
    return f": {str(message)[:200]}" if message else ""


def as_openai_body(status: int, body: bytes) -> bytes:
    """Upstream success bodies pass through untouched; error bodies are made OpenAI-shaped."""
    if status < 400:
        return body
    try:
        parsed = orjson.loads(body)
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
            error = parsed["error"]
            param, code = error.get("param"), error.get("code")
            return error_json(str(error.get("message") or "upstream error"),
                              str(error.get("type") or "invalid_request_error"),
                              code if isinstance(code, str) else None,
                              param if isinstance(param, str) else None)
    except orjson.JSONDecodeError:
        pass
    text = body.decode("utf-8", "replace").strip()[:500] or f"upstream status {status}"
    return error_json(text, "invalid_request_error", f"upstream_{status}")
