"""Reading request bodies at the edge: bounded in size and time, one JSON object that every
stage can write again. What the fields must hold is the codec's to check
(``core.codec.check_request``)."""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from ironhold.config.durations import parse_duration
from ironhold.core.errors import InvalidRequestError, PayloadTooLargeError, RequestTimeoutError


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
    return parse_json_object(await read_body(request, limit, within))


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """``raw`` as one JSON object that every stage can write again (400 otherwise)."""
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


_M = TypeVar("_M", bound=BaseModel)


def parse_body(model: type[_M], body: dict[str, Any]) -> _M:
    """Validate an admin request body; the first problem becomes an OpenAI-shaped 400."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or None
        raise InvalidRequestError(f"'{where}': {first['msg']}", param=where) from None
