"""OAuth 2.0 token exchange (RFC 8693) for agent passports, and the passports' public keys.

``POST /oauth/token`` with ``grant_type=urn:ietf:params:oauth:grant-type:token-exchange``:

- ``subject_token``: the credential of whoever delegates: an Ironhold API key, an OIDC token, or
  a passport (which makes the chain one longer);
- ``actor_token``: the agent's name, with
  ``actor_token_type=urn:ironhold:params:oauth:token-type:agent``;
- ``scope`` (optional): ``models:a,b tools:x admin``, no wider than the subject's;
- Ironhold's extensions (optional): ``expires_in`` (seconds), and caps ``rpm``, ``tpm``,
  ``concurrency``, ``budget_usd_daily``, ``budget_usd_monthly``, no looser than the subject's.

Form-encoded (as the RFC says) or JSON. Errors use the OpenAI error shape like every route.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import orjson
from aiohttp import web

from ironhold.api.audit import record_event
from ironhold.api.context import gateway_of
from ironhold.api.requests import read_body
from ironhold.api.responses import json_response
from ironhold.core.errors import InvalidRequestError, NotFoundError, PermissionDeniedError
from ironhold.core.principal import MAX_LIFETIME_SECONDS, Quota
from ironhold.identity.tokens import parse_scopes

if TYPE_CHECKING:
    pass

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"
AGENT_TOKEN_TYPE = "urn:ironhold:params:oauth:token-type:agent"
JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"
SUBJECT_TOKEN_TYPES = (
    "urn:ietf:params:oauth:token-type:access_token",
    JWT_TOKEN_TYPE,
)
_BODY_LIMIT = 64 * 1024


def add_oauth_routes(app: web.Application) -> None:
    async def token(request: web.Request) -> web.Response:
        gateway = gateway_of(request)
        passports = gateway.authenticator.passports
        if passports is None:
            raise NotFoundError("Agent passports are turned off (identity.passports.enabled).",
                                code="passports_disabled")
        form = await _read_form(request, gateway.config.server.body_timeout)
        if form.get("grant_type") != GRANT_TYPE:
            raise InvalidRequestError(f"grant_type must be {GRANT_TYPE}.",
                                      code="unsupported_grant_type", param="grant_type")
        subject_token = _required(form, "subject_token")
        subject_type = form.get("subject_token_type", SUBJECT_TOKEN_TYPES[0])
        if subject_type not in SUBJECT_TOKEN_TYPES:
            raise InvalidRequestError(
                f"subject_token_type must be one of {', '.join(SUBJECT_TOKEN_TYPES)}.",
                param="subject_token_type")
        actor = _required(form, "actor_token")
        if form.get("actor_token_type") != AGENT_TOKEN_TYPE:
            raise InvalidRequestError(
                f"actor_token_type must be {AGENT_TOKEN_TYPE} (the actor token is the agent's "
                "name).", param="actor_token_type")
        subject = await gateway.authenticator.from_token(subject_token)
        if gateway.authorizer is not None:
            gateway.authorizer.require(subject, "delegate", request.remote or "0.0.0.0")
        # Every passport is a row and a durable audit event: minting counts as a request
        # against the subject's limits.
        await gateway.quotas.count_request(subject)
        scope = form.get("scope")
        scopes = parse_scopes(scope.split()) if scope else None
        if scopes is not None and scopes.admin and not subject.admin:
            raise PermissionDeniedError("Only an admin can delegate the admin scope.",
                                        code="invalid_scope")
        issued = await asyncio.to_thread(partial(
            passports.issue, subject, actor, scopes=scopes, quota=_quota(form),
            ttl=_lifetime(form)))
        await record_event(gateway, request, subject, "delegate", {
            "passport": issued.jti, "agent": actor, "chain": list(issued.principal.chain),
            "scopes": issued.principal.scopes.as_list(), "expires_in": issued.expires_in})
        return json_response({
            "access_token": issued.token,
            "issued_token_type": JWT_TOKEN_TYPE,
            "token_type": "Bearer",
            "expires_in": issued.expires_in,
            "scope": " ".join(issued.principal.scopes.as_list()),
            "passport_id": issued.jti,
            "chain": list(issued.principal.chain),
        })

    async def jwks(request: web.Request) -> web.Response:
        passports = gateway_of(request).authenticator.passports
        return json_response(passports.jwks() if passports is not None else {"keys": []})

    app.router.add_post("/oauth/token", token)
    app.router.add_get("/.well-known/jwks.json", jwks)


async def _read_form(request: web.Request, within: float) -> Mapping[str, str]:
    raw = await read_body(request, _BODY_LIMIT, within)
    if request.content_type == "application/json":
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise InvalidRequestError("The request body is not valid JSON.") from None
        if not isinstance(data, dict):
            raise InvalidRequestError("The request body must be a JSON object.")
        return {k: v if isinstance(v, str) else orjson.dumps(v).decode()
                for k, v in data.items()}
    if request.content_type != "application/x-www-form-urlencoded":
        raise InvalidRequestError(
            "Send the token request as application/x-www-form-urlencoded (or JSON).")
    try:
        return dict(parse_qsl(raw.decode(), keep_blank_values=True))
    except UnicodeDecodeError:
        raise InvalidRequestError("The request body is not UTF-8.") from None


def _required(form: Mapping[str, str], name: str) -> str:
    value = form.get(name, "").strip()
    if not value:
        raise InvalidRequestError(f"'{name}' is required.", param=name)
    return value


def _number(form: Mapping[str, str], name: str, kind: type[int | float]) -> Any:
    if name not in form:
        return None
    try:
        return kind(form[name])
    except ValueError:
        raise InvalidRequestError(f"'{name}' must be a number.", param=name) from None


def _lifetime(form: Mapping[str, str]) -> float | None:
    value: float | None = _number(form, "expires_in", float)
    if value is not None and not 0 < value <= MAX_LIFETIME_SECONDS:  # also refuses nan
        raise InvalidRequestError(
            f"'expires_in' must be more than 0 and at most {MAX_LIFETIME_SECONDS} seconds.",
            param="expires_in")
    return value


def _quota(form: Mapping[str, str]) -> Quota | None:
    quota = Quota(
        rpm=_number(form, "rpm", int),
        tpm=_number(form, "tpm", int),
        concurrency=_number(form, "concurrency", int),
        budget_usd_daily=_number(form, "budget_usd_daily", float),
        budget_usd_monthly=_number(form, "budget_usd_monthly", float),
    )
    quota.check()  # positive and bounded, the same rule as every credential's limits
    return None if quota.is_empty() else quota
