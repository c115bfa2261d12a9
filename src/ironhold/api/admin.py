"""Admin routes under ``/admin/``: they need an API key with the admin flag."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from aiohttp import web

from ironhold.api.requests import read_json_body
from ironhold.api.responses import json_response
from ironhold.core.errors import InvalidRequestError, NotFoundError, PermissionDeniedError

if TYPE_CHECKING:
    from ironhold.bootstrap import Gateway

_ADMIN_BODY_LIMIT = 64 * 1024


def add_admin_routes(app: web.Application, key: web.AppKey[Gateway]) -> None:
    async def require_admin(request: web.Request) -> Gateway:
        gateway = request.app[key]
        principal = await gateway.identity.authenticate(request.headers.get("Authorization"))
        if not principal.admin:
            raise PermissionDeniedError("This endpoint needs an admin API key.")
        return gateway

    async def list_keys(request: web.Request) -> web.Response:
        gateway = await require_admin(request)
        include_revoked = request.query.get("include_revoked", "false").lower() == "true"
        keys = await asyncio.to_thread(gateway.keys.list_keys, include_revoked)
        return json_response({"object": "list", "data": [k.as_dict() for k in keys]})

    async def create_key(request: web.Request) -> web.Response:
        gateway = await require_admin(request)
        body = await read_json_body(request, _ADMIN_BODY_LIMIT)
        name = body.get("name")
        models = body.get("models")
        admin = body.get("admin", False)
        if not isinstance(name, str):
            raise InvalidRequestError("'name' is required and must be a string.", param="name")
        if models is not None and (
            not isinstance(models, list) or not all(isinstance(m, str) for m in models)
        ):
            raise InvalidRequestError("'models' must be an array of strings.", param="models")
        if not isinstance(admin, bool):
            raise InvalidRequestError("'admin' must be a boolean.", param="admin")
        created, secret = await asyncio.to_thread(gateway.keys.create, name, models, admin)
        return json_response({**created.as_dict(), "key": secret}, status=201)

    async def revoke_key(request: web.Request) -> web.Response:
        gateway = await require_admin(request)
        key_id = request.match_info["key_id"]
        revoked = await asyncio.to_thread(gateway.keys.revoke, key_id)
        if not revoked:
            raise NotFoundError(f"No active key '{key_id}'.", code="key_not_found")
        return json_response({"object": "list", "data": [k.as_dict() for k in revoked]})

    app.router.add_get("/admin/keys", list_keys)
    app.router.add_post("/admin/keys", create_key)
    app.router.add_delete("/admin/keys/{key_id}", revoke_key)
