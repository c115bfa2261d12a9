"""Reading and checking OpenAI request bodies at the edge.

Only what the gateway itself relies on is checked (the model name, the shape of the fields it
routes on, and every number that flows into a reservation, a record or a store call); every
other field, known or not, passes through untouched. A number a hostile tenant sends is
bounded here, with a 400 naming the field, before any stage can add it to a counter.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web

from ironhold.config.durations import parse_duration
from ironhold.core.errors import InvalidRequestError, PayloadTooLargeError, RequestTimeoutError
from ironhold.core.exchange import Operation

#: The most completion tokens a request may ask for. Far above any model's context window, and
#: far below what would overflow a counter (a reservation is this times ``n`` plus the prompt).
MAX_COMPLETION_TOKENS = 1 << 24
#: The most choices one request may ask for (OpenAI's own limit).
MAX_CHOICES = 128
_TOKEN_FIELDS = ("max_tokens", "max_completion_tokens")
_CHOICE_FIELDS = ("n", "best_of")


async def read_body(request: web.Request, limit: int, within: float) -> bytes:
    """The raw body: at most ``limit`` bytes (413), arriving within ``within`` seconds (408)."""
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    try:
        if request.content.is_eof():  # it came whole with the headers: no wait, no timer
            raw = await request.read()
        else:
            async with asyncio.timeout(within):
                raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise _too_large(limit) from exc
    except TimeoutError:
        raise RequestTimeoutError(
            f"The request body did not arrive within {within:g} seconds.") from None
    if len(raw) > limit:
        raise _too_large(limit)
    return raw


async def read_json_body(request: web.Request, limit: int, within: float) -> dict[str, Any]:
    raw = await read_body(request, limit, within)
    if not raw:
        raise InvalidRequestError("The request body is empty; send a JSON object.")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequestError(
            "We could not parse the JSON body of your request: "
            f"{str(exc).splitlines()[0]}"
        ) from exc
    if not isinstance(body, dict):
        raise InvalidRequestError("The request body must be a JSON object.")
    try:
        # orjson reads deeper nesting than it writes; a body every stage (the router, the
        # audit record) can write again is checked once, here, in C.
        orjson.dumps(body)
    except orjson.JSONEncodeError:
        raise InvalidRequestError(
            "The request body is nested too deeply (at most 250 levels of objects and arrays)."
        ) from None
    return body


def check_body(operation: Operation, body: dict[str, Any]) -> tuple[str, bool]:
    """Validate what routing depends on; returns the model name and whether to stream."""
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequestError("'model' is required and must be a non-empty string.",
                                  param="model", code="missing_required_parameter")
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise InvalidRequestError("'stream' must be a boolean.", param="stream")
    if operation is Operation.CHAT:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise InvalidRequestError("'messages' must be a non-empty array.",
                                      param="messages")
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or not isinstance(message.get("role"), str):
                raise InvalidRequestError(
                    f"'messages[{i}]' must be an object with a string 'role'.",
                    param=f"messages[{i}]",
                )
    elif operation is Operation.COMPLETION:
        if not isinstance(body.get("prompt"), str | list):
            raise InvalidRequestError("'prompt' must be a string or an array.", param="prompt")
    elif operation is Operation.EMBEDDING:
        if not isinstance(body.get("input"), str | list) or body.get("input") in ("", []):
            raise InvalidRequestError("'input' must be a non-empty string or array.",
                                      param="input")
        if stream:
            raise InvalidRequestError("Embeddings cannot be streamed.", param="stream")
    options = body.get("stream_options")
    if options is not None:
        if not stream:
            raise InvalidRequestError("'stream_options' is only allowed when 'stream' is true.",
                                      param="stream_options")
        if not isinstance(options, dict) or not isinstance(
                options.get("include_usage", False), bool):
            raise InvalidRequestError(
                "'stream_options' must be an object whose 'include_usage' is a boolean.",
                param="stream_options")
    for name in _TOKEN_FIELDS:
        _bounded_int(body, name, 1, MAX_COMPLETION_TOKENS)
    for name in _CHOICE_FIELDS:
        _bounded_int(body, name, 1, MAX_CHOICES)
    return model, stream


def _bounded_int(body: dict[str, Any], name: str, low: int, high: int) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequestError(f"'{name}' must be an integer.", param=name)
    if not low <= value <= high:
        raise InvalidRequestError(f"'{name}' must be between {low} and {high} (got {value}).",
                                  param=name, code="invalid_value")


def _too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(f"The request body is larger than the limit of {limit} bytes.")


def parse_timeout_header(name: str, value: str) -> float:
    """A per-request deadline header: ``2.5`` (seconds), ``500ms``, ``30s`` or ``2m``."""
    try:
        seconds = parse_duration(value)
    except ValueError:
        seconds = None
    if not isinstance(seconds, int | float) or not 0 < seconds < 86400:
        raise InvalidRequestError(
            f"The {name} header must be a positive duration such as 500ms, 30s or 2m "
            f"(got {value[:40]!r}).", param=name)
    return float(seconds)
