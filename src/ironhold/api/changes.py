"""Changes tried on live traffic, for admins: ``GET /admin/rollouts`` (each rollout's state,
share and the window its gates judge), ``POST /admin/rollouts/{model}/{action}`` (start,
pause, promote, abort) and ``GET /admin/shadow`` (each shadow's comparison)."""

from __future__ import annotations

from aiohttp import web

from ironhold.api.audit import ADMIN, RequireAdmin
from ironhold.api.responses import json_response
from ironhold.core.errors import NotFoundError

__all__ = ["add_change_routes"]


def add_change_routes(app: web.Application, require_admin: RequireAdmin) -> None:
    async def rollouts(request: web.Request) -> web.Response:
        gateway = await require_admin(request, "observe")
        listed = gateway.rollouts.listing() if gateway.rollouts is not None else []
        return json_response({"rollouts": listed})

    async def rollout_action(request: web.Request) -> web.Response:
        gateway = await require_admin(request, "change_config")
        if gateway.rollouts is None:
            raise NotFoundError("No model group has a rollout.", code="rollout_not_found")
        state = await gateway.rollouts.command(request.match_info["model"],
                                               request.match_info["action"], request[ADMIN])
        return json_response(state.as_json())

    async def shadow(request: web.Request) -> web.Response:
        gateway = await require_admin(request, "observe")
        return json_response({"shadows": [s.summary() for s in gateway.shadows.values()]})

    app.router.add_get("/admin/rollouts", rollouts)
    app.router.add_post("/admin/rollouts/{model:.+}/{action}", rollout_action)
    app.router.add_get("/admin/shadow", shadow)
