"""Token usage as model servers report it: in a JSON body, or in a stream's usage chunk."""

from __future__ import annotations

import orjson

from ironhold.core.exchange import Exchange, Usage


def usage_of(body: bytes) -> Usage | None:
    if b'"usage"' not in body:
        return None
    try:
        return _parse_usage(orjson.loads(body).get("usage"))
    except (orjson.JSONDecodeError, AttributeError):
        return None


def usage_in_sse(chunk: bytes) -> Usage | None:
    for line in chunk.split(b"\n"):
        if line.startswith(b"data: {") and b'"usage"' in line:
            try:
                usage = _parse_usage(orjson.loads(line[6:]).get("usage"))
            except (orjson.JSONDecodeError, AttributeError):
                continue
            if usage is not None:
                return usage
    return None


def observe_sse(chunk: bytes, exchange: Exchange) -> bool:
    """Take the usage from a streamed chunk that carries it; True if the chunk holds an error
    event (a stream that broke after the commit point)."""
    if b'"usage":{' in chunk or b'"usage": {' in chunk:
        usage = usage_in_sse(chunk)
        if usage is not None:
            exchange.usage = usage
    return chunk.startswith(b'data: {"error"') or b'\n\ndata: {"error"' in chunk


def _parse_usage(raw: object) -> Usage | None:
    if not isinstance(raw, dict):
        return None
    prompt, completion = raw.get("prompt_tokens"), raw.get("completion_tokens", 0)
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    return Usage(prompt_tokens=prompt, completion_tokens=completion)
