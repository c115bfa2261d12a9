"""Reading model-server answers: error bodies made OpenAI-shaped, Retry-After, and the answers
that hand a request to a fallback group."""

from __future__ import annotations

import orjson

from ironhold.config.schema import FallbackOnConfig
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


def is_json(body: bytes) -> bool:
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return True


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
    elif reply.status == 200 and on.content_filter and b'"content_filter"' in body:
        try:
            choices = orjson.loads(body).get("choices") or []
        except (orjson.JSONDecodeError, AttributeError):
            return None
        if any(isinstance(c, dict) and c.get("finish_reason") == "content_filter"
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
