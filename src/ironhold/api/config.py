"""The running config, for admins: ``GET /admin/config`` says which config runs (its version,
when it was loaded, from where; never its contents) and ``POST /admin/config`` applies a new
one (what ``ironhold config apply`` calls): checked, built beside the running gateway and
swapped in without dropping a request, or refused with the running one kept."""

from __future__ import annotations

from typing import Any

import yaml
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from ironhold.api.audit import ADMIN, RequireAdmin
from ironhold.api.context import serving_of
from ironhold.api.requests import parse_body, read_json_body
from ironhold.api.responses import json_response
from ironhold.config.loader import parse_config
from ironhold.config.schema import Config
from ironhold.core.errors import ConfigError, InvalidRequestError

__all__ = ["add_config_routes"]

#: A config is YAML text; a megabyte is far more than any real one.
_BODY_LIMIT = 1024 * 1024


class ApplyConfig(BaseModel):
    """The body of ``POST /admin/config``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    #: The config file's text (YAML). ``${ENV}`` references are resolved by the gateway, in
    #: its own environment: secrets never travel with it.
    config: str = Field(max_length=_BODY_LIMIT)
    #: The file's name, for errors and ``GET /admin/config``'s ``source``.
    source: str = Field("admin API", min_length=1, max_length=256,
                        pattern=r"^[^\x00-\x1f\x7f]+$")
    #: Check it (and list the changes) without applying it.
    dry_run: bool = False


def add_config_routes(app: web.Application, require_admin: RequireAdmin) -> None:
    async def running_config(request: web.Request) -> web.Response:
        """Which config runs: its version (compare with ``ironhold config diff``), when it was
        loaded and from where. Never its contents (secrets)."""
        gateway = await require_admin(request, "observe")
        return json_response({"version": gateway.version, "loaded_at": gateway.loaded_at,
                              "source": gateway.config.source})

    async def apply_config(request: web.Request) -> web.Response:
        gateway = await require_admin(request, "change_config")
        body = parse_body(ApplyConfig, await read_json_body(
            request, _BODY_LIMIT + 4096, gateway.config.server.body_timeout))
        base_dir = gateway.config.base_dir

        def load() -> Config:
            return parse_config(_yaml(body.config, body.source), source=body.source,
                                base_dir=base_dir)

        try:
            done = await serving_of(request).reload(
                load, trigger="api", principal=request[ADMIN], dry_run=body.dry_run)
        except ConfigError as exc:
            raise InvalidRequestError(exc.message, code="invalid_config") from None
        return json_response(done.as_json())

    app.router.add_get("/admin/config", running_config)
    app.router.add_post("/admin/config", apply_config)


#: Values a config may hold once its aliases are followed: real ones hold a few thousand; a
#: YAML "billion laughs" (aliases of aliases) holds more than memory.
_MAX_VALUES = 100_000


def _yaml(text: str, source: str) -> Any:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{source}: nested too deeply") from None
    _count_values(data, source)
    return data


def _count_values(data: Any, source: str) -> None:
    seen = 0
    stack = [data]
    while stack:
        value = stack.pop()
        seen += 1
        if seen > _MAX_VALUES:
            raise ConfigError(f"{source}: more than {_MAX_VALUES:,} values once its aliases are "
                              "expanded; not a config")
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
