"""What the edge middleware attaches to every request for the handlers below it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from ironhold.api.process_group import ProcessGroup
    from ironhold.bootstrap import Gateway
    from ironhold.serving import Serving

#: The request's id: the client's ``x-request-id`` if well-formed, else a new UUID.
REQUEST_ID = web.RequestKey("request_id", str)
#: The running gateway and its reloads.
SERVING: web.AppKey[Serving] = web.AppKey("serving")
#: Under ``serve --workers``: this worker's siblings, for ``/metrics`` of the whole group.
PROCESS_GROUP: web.AppKey[ProcessGroup | None] = web.AppKey("process_group")


def request_id_of(request: web.Request) -> str:
    return request[REQUEST_ID]


def gateway_of(request: web.Request) -> Gateway:
    """The gateway serving this request: the one current when it arrived (a reload swaps in
    another for later requests)."""
    return request.app[SERVING].current


def serving_of(request: web.Request) -> Serving:
    return request.app[SERVING]
