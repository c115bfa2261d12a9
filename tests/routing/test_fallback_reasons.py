"""Which upstream answers hand a request to a fallback group."""

from __future__ import annotations

from typing import Any

import orjson

from ironhold.config.schema import FallbackOnConfig
from ironhold.core.exchange import Reply
from ironhold.routing.answers import fallback_reason


def group(**on: bool) -> FallbackOnConfig:
    return FallbackOnConfig(**on)


def error(code: str, message: str = "no") -> Reply:
    return Reply(status=400, body=orjson.dumps({"error": {"message": message, "code": code}}))


def answer(doc: dict[str, Any]) -> Reply:
    return Reply(status=200, body=orjson.dumps(doc), answer=doc)


def test_context_length_and_content_filter_answers() -> None:
    on = group(content_filter=True)
    assert fallback_reason(error("context_length_exceeded"), on) == "context_length"
    assert fallback_reason(error("", "This model's maximum context length is 8192"), on) \
        == "context_length"
    assert fallback_reason(error("content_filter"), on) == "content_filter"
    filtered = answer({"choices": [{"index": 0, "finish_reason": "content_filter",
                                    "message": {}}]})
    assert fallback_reason(filtered, on) == "content_filter"
    assert fallback_reason(error("invalid_value", "temperature must be <= 2"), on) is None
    fine = answer({"choices": [{"index": 0, "finish_reason": "stop",
                                "message": {"content": "about content_filter settings"}}]})
    assert fallback_reason(fine, on) is None


def test_each_trigger_can_be_turned_off() -> None:
    off = group(context_length=False, content_filter=False)
    assert fallback_reason(error("context_length_exceeded"), off) is None
    assert fallback_reason(error("content_filter"), off) is None
    assert fallback_reason(error("content_filter"), group()) is None  # off by default
