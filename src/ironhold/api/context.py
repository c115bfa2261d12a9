"""What the edge middleware attaches to every request for the handlers below it."""

from __future__ import annotations

from aiohttp import web

#: The request's id: the client's ``x-request-id`` if well-formed, else a new UUID.
REQUEST_ID = web.RequestKey("request_id", str)


def request_id_of(request: web.Request) -> str:
    return request[REQUEST_ID]
