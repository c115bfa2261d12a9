"""Admin routes under ``/admin/``: they need an API key with the admin flag."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import TYPE_CHECKING

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from ironhold.api.audit import ADMIN, add_audit_routes, record_event
from ironhold.api.changes import add_change_routes
from ironhold.api.config import add_config_routes
from ironhold.api.console import add_console_routes
from ironhold.api.context import gateway_of
from ironhold.api.insight import add_insight_routes
from ironhold.api.mcp_admin import add_mcp_admin_routes
from ironhold.api.requests import parse_body, read_json_body
from ironhold.api.responses import json_response
from ironhold.core.errors import NotFoundError, PermissionDeniedError
from ironhold.core.principal import Quota

if TYPE_CHECKING:
    from ironhold.bootstrap import Gateway

_ADMIN_BODY_LIMIT = 64 * 1024


class NewKey(BaseModel):
    """The body of ``POST /admin/keys``: the same choices as ``ironhold keys create``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str
    models: list[str] | None = None
    tools: list[str] | None = None
    admin: bool = False
    tenant: str | None = None
    rpm: int | None = Field(None, gt=0)
    tpm: int | None = Field(None, gt=0)
    concurrency: int | None = Field(None, gt=0)
    budget_usd_daily: float | None = Field(None, gt=0)
    budget_usd_monthly: float | None = Field(None, gt=0)
    #: Seconds until the key expires.
    expires_in: float | None = Field(None, gt=0)


def add_admin_routes(app: web.Application) -> None:
    async def require_admin(request: web.Request, action: str = "manage_keys") -> Gateway:
        """An admin identity (the admin scope), and the policy's permit when one is set."""
        gateway = gateway_of(request)
        principal = await gateway.authenticator.authenticate(request.headers.get("Authorization"))
        if not principal.admin:
            raise PermissionDeniedError("This endpoint needs an admin identity.")
        if gateway.authorizer is not None:
            gateway.authorizer.require(principal, action, request.remote or "0.0.0.0")
        request[ADMIN] = principal
        return gateway

    async def list_keys(request: web.Request) -> web.Response:
        gateway = await require_admin(request)
        include_revoked = request.query.get("include_revoked", "false").lower() == "true"
        keys = await asyncio.to_thread(gateway.keys.list_keys, include_revoked)
        return json_response({"object": "list", "data": [k.as_dict() for k in keys]})

    async def create_key(request: web.Request) -> web.Response:
        gateway = await require_admin(request)
        if request[ADMIN].kind == "agent":
            # A key would outlive the passport and survive its revocation: a delegated
            # identity never creates a credential broader or longer-lived than itself.
            raise PermissionDeniedError(
                "An agent passport cannot create API keys; use a key or a user token.",
                code="delegated_credential")
        spec = parse_body(NewKey, await read_json_body(request, _ADMIN_BODY_LIMIT,
                                                       gateway.config.server.body_timeout))
        quota = Quota(rpm=spec.rpm, tpm=spec.tpm, concurrency=spec.concurrency,
                      budget_usd_daily=spec.budget_usd_daily,
                      budget_usd_monthly=spec.budget_usd_monthly)
        created, secret = await asyncio.to_thread(
            partial(gateway.keys.create, spec.name, spec.models, spec.admin, tenant=spec.tenant,
                    tools=spec.tools, expires_in=spec.expires_in, quota=quota))
        await record_event(gateway, request, request[ADMIN], "create_key", created.as_dict())
        return json_response({**created.as_dict(), "key": secret}, status=201)

    async def revoke_key(request: web.Request) -> web.Response:
        gateway = await require_admin(request)
        key_id = request.match_info["key_id"]
        # By id only: names are not unique, and a DELETE of one name used to revoke every
        # key that shared it (the CLI, with the list in front of its user, takes a name).
        revoked = await asyncio.to_thread(gateway.authenticator.revoke_key, key_id, False)
        if not revoked:
            raise NotFoundError(f"No active key '{key_id}'.", code="key_not_found")
        await record_event(gateway, request, request[ADMIN], "revoke_key",
                           {"id": key_id, "revoked": [k.id for k in revoked]})
        return json_response({"object": "list", "data": [k.as_dict() for k in revoked]})

    async def whoami(request: web.Request) -> web.Response:
        """Any identity may see how the gateway sees it (useful when debugging tokens)."""
        gateway = gateway_of(request)
        principal = await gateway.authenticator.authenticate(request.headers.get("Authorization"))
        return json_response(principal.describe())

    async def list_passports(request: web.Request) -> web.Response:
        gateway = await require_admin(request, "manage_passports")
        passports = gateway.authenticator.passports
        if passports is None:
            return json_response({"object": "list", "data": []})
        rows = await asyncio.to_thread(passports.list_passports, request.query.get("subject"))
        return json_response({"object": "list", "data": [row.as_dict() for row in rows]})

    async def revoke_passport(request: web.Request) -> web.Response:
        gateway = await require_admin(request, "manage_passports")
        passports = gateway.authenticator.passports
        jti = request.match_info["passport_id"]
        revoked = [] if passports is None else await asyncio.to_thread(passports.revoke, jti)
        if not revoked:
            raise NotFoundError(f"No active passport '{jti}'.", code="passport_not_found")
        await record_event(gateway, request, request[ADMIN], "revoke_passport",
                           {"id": jti, "revoked": revoked})
        return json_response({"object": "list", "revoked": revoked})

    app.router.add_get("/admin/whoami", whoami)
    app.router.add_get("/admin/passports", list_passports)
    app.router.add_delete("/admin/passports/{passport_id}", revoke_passport)
    app.router.add_get("/admin/keys", list_keys)
    app.router.add_post("/admin/keys", create_key)
    app.router.add_delete("/admin/keys/{key_id}", revoke_key)
    add_audit_routes(app, require_admin)
    add_insight_routes(app, require_admin)
    add_console_routes(app, require_admin)
    add_config_routes(app, require_admin)
    add_change_routes(app, require_admin)
    add_mcp_admin_routes(app, require_admin)
