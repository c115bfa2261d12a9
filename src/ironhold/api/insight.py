"""What the gateway sees of itself, for admins: ``GET /admin/signals`` (active and recent
signals) and ``POST /admin/signals/drift/reset`` (a model group's drift reference starts
again, optionally pinned with a label such as a model version)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from ironhold.api.audit import ADMIN, RequireAdmin, record_event
from ironhold.api.requests import parse_body, read_json_body
from ironhold.api.responses import json_response
from ironhold.core.errors import InvalidRequestError, ModelNotFoundError

if TYPE_CHECKING:
    from ironhold.bootstrap import Gateway
    from ironhold.telemetry.insight import Insight

__all__ = ["add_insight_routes"]

_BODY_LIMIT = 16 * 1024


class DriftReset(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    model: str = Field(min_length=1, max_length=256)
    #: Pin the new reference under this label (``v2``): it is kept until reset again.
    pin: str | None = Field(None, min_length=1, max_length=128)


def add_insight_routes(app: web.Application, require_admin: RequireAdmin) -> None:
    async def signals(request: web.Request) -> web.Response:
        gateway = await require_admin(request, "observe")
        board = gateway.signals
        listed = board.listing() if board is not None else []
        return json_response({"signals": [s.as_json() for s in listed]})

    async def reset_drift(request: web.Request) -> web.Response:
        gateway = await require_admin(request, "observe")
        spec = parse_body(DriftReset, await read_json_body(
            request, _BODY_LIMIT, gateway.config.server.body_timeout))
        insight = _insight(gateway)
        label = f"pinned: {spec.pin}" if spec.pin else None
        if not insight.reset_drift(spec.model, label):
            raise ModelNotFoundError(f"The model '{spec.model}' does not exist.",
                                     param="model")
        await record_event(gateway, request, request[ADMIN], "reset_drift",
                           {"model": spec.model, "pin": spec.pin})
        return json_response({"model": spec.model, "reference": insight.groups[
            spec.model].drift.reference_label})

    app.router.add_get("/admin/signals", signals)
    app.router.add_post("/admin/signals/drift/reset", reset_drift)


def _insight(gateway: Gateway) -> Insight:
    if gateway.insight is None:
        raise InvalidRequestError("Signals are switched off (telemetry.signals.enabled).")
    return gateway.insight
