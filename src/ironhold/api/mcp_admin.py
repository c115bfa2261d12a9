"""The MCP tool gateway for admins: ``GET /admin/mcp`` (each tool server's state, and every
pinned tool with its status) and ``POST /admin/mcp/tools/{name}/approve`` (accept a
quarantined tool's new definition; ``{"digest": ...}`` approves only that definition)."""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from ironhold.api.audit import ADMIN, RequireAdmin
from ironhold.api.requests import read_json_body
from ironhold.api.responses import json_response
from ironhold.audit.record import ChangeRecord
from ironhold.core.errors import InvalidRequestError, NotFoundError
from ironhold.core.ids import new_request_id

__all__ = ["add_mcp_admin_routes"]

_BODY_LIMIT = 4096


def add_mcp_admin_routes(app: web.Application, require_admin: RequireAdmin) -> None:
    async def overview(request: web.Request) -> web.Response:
        gateway = await require_admin(request, "observe")
        tools = gateway.tools
        if tools is None:
            return json_response({"servers": [], "tools": []})
        pins = await asyncio.to_thread(tools.catalogue.pins.list_pins)
        return json_response({
            "servers": [s.status() for s in tools.servers.values()],
            "tools": [pin.as_json() for pin in pins],
        })

    async def approve(request: web.Request) -> web.Response:
        gateway = await require_admin(request, "change_config")
        if gateway.tools is None:
            raise NotFoundError("The MCP tool gateway is off.", code="mcp_disabled")
        body = await read_json_body(request, _BODY_LIMIT, gateway.config.server.body_timeout) \
            if request.can_read_body else {}
        digest = body.get("digest")
        if digest is not None and not isinstance(digest, str):
            raise InvalidRequestError("'digest' must be a string.", param="digest")
        name = request.match_info["name"]
        principal = request[ADMIN]
        pin = await gateway.tools.catalogue.approve(name, principal.id, digest)
        if pin is None:
            raise NotFoundError(f"No tool '{name[:200]}' has been seen.", code="unknown_tool")
        if pin.status != "approved":
            raise InvalidRequestError(
                f"The tool '{name}' waits for approval of {pin.pending_digest}, not {digest}.",
                param="digest", code="digest_mismatch")
        gateway.metrics.tools_quarantined.set(gateway.tools.catalogue.quarantined())
        if gateway.audit is not None:
            await gateway.audit.record_change(ChangeRecord(
                round(time.time(), 6), new_request_id(), principal, "tool_approved", "approved",
                {"tool": name, "digest": pin.digest}))
        if gateway.signals is not None:
            gateway.signals.clear("tool_changed", pin.server, None, name)
        return json_response(pin.as_json())

    app.router.add_get("/admin/mcp", overview)
    app.router.add_post("/admin/mcp/tools/{name}/approve", approve)
