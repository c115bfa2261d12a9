"""Reading and checking OpenAI request bodies at the edge.

Only what the gateway itself relies on is checked (the model name, the shape of the fields it
routes on); every other field, known or not, passes through untouched.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from ironhold.config.durations import parse_duration
from ironhold.core.errors import InvalidRequestError, PayloadTooLargeError
from ironhold.core.exchange import Operation


async def read_json_body(request: web.Request, limit: int) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise _too_large(limit) from exc
    if len(raw) > limit:
        raise _too_large(limit)
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
    if options is not None and not stream:
        raise InvalidRequestError("'stream_options' is only allowed when 'stream' is true.",
                                  param="stream_options")
    return model, stream


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
