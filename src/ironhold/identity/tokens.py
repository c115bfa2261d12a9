"""Verifying signed bearer tokens (JWT): OIDC users from the organisation's identity provider.

joserfc does the cryptography; this module decides what is acceptable: only the configured
asymmetric algorithms (never ``none``, never HMAC), the issuer and audience, ``exp`` required,
``nbf`` and ``iat`` honoured, all with a bounded clock-skew leeway. Then the configured claims
become a ``Principal``.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Collection, Mapping
from typing import Any

import orjson
from joserfc import jwt
from joserfc.errors import ExpiredTokenError, JoseError
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry

from ironhold.config.security import JwtConfig
from ironhold.core.errors import AuthenticationError
from ironhold.core.principal import Principal, Scopes
from ironhold.identity.jwks import JwksSource

#: Tokens larger than this are refused before any parsing.
MAX_TOKEN_BYTES = 16 * 1024


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and len(token) <= MAX_TOKEN_BYTES


def peek(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and claims of a token, *unverified*: only to choose who verifies it."""
    try:
        header_b64, claims_b64, _ = token.split(".")
        header = orjson.loads(_b64decode(header_b64))
        claims = orjson.loads(_b64decode(claims_b64))
    except (ValueError, orjson.JSONDecodeError):
        raise AuthenticationError("The bearer token is malformed.", code="invalid_token") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise AuthenticationError("The bearer token is malformed.", code="invalid_token")
    return header, claims


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def verify_jwt(
    token: str,
    header: dict[str, Any],
    keys: KeySet,
    *,
    algorithms: Collection[str],
    issuer: str,
    audience: str | list[str],
    leeway: float,
) -> dict[str, Any]:
    """The token's claims if its signature and registered claims are valid; else a 401.
    ``header`` is the token's header as ``peek`` read it (read once per request)."""
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in algorithms:
        # Checked here as well as by joserfc so the message can say why.
        raise AuthenticationError(f"Token algorithm {str(alg)[:20]!r} is not accepted.",
                                  code="invalid_token")
    try:
        decoded = jwt.decode(token, keys, algorithms=list(algorithms))
    except JoseError as exc:
        raise AuthenticationError(_why(exc), code="invalid_token") from None
    audiences = [audience] if isinstance(audience, str) else audience
    registry = JWTClaimsRegistry(
        now=int(time.time()),
        leeway=int(leeway),
        iss={"essential": True, "value": issuer},
        aud={"essential": True, "values": audiences},
        exp={"essential": True},
        sub={"essential": True},
    )
    try:
        registry.validate(decoded.claims)
    except ExpiredTokenError:
        raise AuthenticationError("The token has expired.", code="expired_token") from None
    except JoseError as exc:
        raise AuthenticationError(_why(exc), code="invalid_token") from None
    iat = decoded.claims.get("iat")
    if isinstance(iat, int | float) and iat > time.time() + leeway:
        raise AuthenticationError("The token was issued in the future.", code="invalid_token")
    return decoded.claims


def _why(exc: JoseError) -> str:
    """joserfc's reason, without echoing any part of the token."""
    name = type(exc).__name__
    reasons = {
        "BadSignatureError": "The token's signature is not valid.",
        "UnsupportedAlgorithmError": "The token's algorithm is not accepted.",
        "MissingKeyError": "The token was signed by a key the gateway does not know.",
        "InvalidKeyIdError": "The token was signed by a key the gateway does not know.",
        "InvalidClaimError": f"The token's '{getattr(exc, 'claim', '?')}' claim is not valid.",
        "MissingClaimError": f"The token lacks the '{getattr(exc, 'claim', '?')}' claim.",
    }
    return reasons.get(name, "The bearer token is not valid.")


class OidcVerifier:
    """Users authenticated by the organisation's identity provider."""

    def __init__(self, config: JwtConfig, jwks: JwksSource):
        self._config = config
        self.jwks = jwks
        self.issuer = config.issuer

    async def verify(self, token: str, header: dict[str, Any] | None = None,
                     audience: str | None = None) -> Principal:
        if header is None:
            header, _ = peek(token)
        kid = header.get("kid")
        keys = await self.jwks.keys(kid if isinstance(kid, str) else None)
        c = self._config
        claims = verify_jwt(token, header, keys, algorithms=c.algorithms, issuer=c.issuer,
                            audience=audience if audience is not None else c.audience,
                            leeway=c.leeway)
        return self.principal(claims)

    def principal(self, claims: Mapping[str, Any]) -> Principal:
        mapping = self._config.claims
        subject = claims.get(mapping.subject)
        if not isinstance(subject, str) or not subject:
            raise AuthenticationError(f"The token has no '{mapping.subject}' claim.",
                                      code="invalid_token")
        name = claims.get(mapping.name)
        tenant = claims.get(mapping.tenant) if mapping.tenant else None
        groups = _strings(claims.get(mapping.groups)) if mapping.groups else ()
        granted = _strings(claims.get(mapping.scopes)) if mapping.scopes else ()
        # An identity provider's bare ``admin`` may mean admin of anything it serves: only the
        # namespaced scope makes a gateway admin.
        scopes = parse_scopes(granted, admin_scopes=("ironhold:admin",))
        admin = scopes.admin or bool(set(groups) & set(self._config.admin_groups))
        exp = claims.get("exp")
        return Principal(
            id=f"user:{subject}",
            kind="user",
            name=name if isinstance(name, str) and name else subject,
            scopes=Scopes(models=scopes.models, tools=scopes.tools, admin=admin),
            tenant=tenant if isinstance(tenant, str) and tenant else None,
            groups=groups,
            expires_at=float(exp) if isinstance(exp, int | float) and abs(exp) < 1e13 else None,
        )


def _strings(value: object) -> tuple[str, ...]:
    """A claim holding a list of strings or one space-separated string."""
    if isinstance(value, str):
        return tuple(v for v in value.split() if v)
    if isinstance(value, list):
        return tuple(v for v in value if isinstance(v, str) and v)
    return ()


def parse_scopes(items: Collection[str],
                 admin_scopes: Collection[str] = ("admin", "ironhold:admin")) -> Scopes:
    """Ironhold scopes from OAuth scope strings: ``models:a,b`` and ``tools:x,y`` restrict (one
    of each at most; absent means all), one of ``admin_scopes`` grants admin. Other scopes
    (``openid``, ``email``, ...) are ignored."""
    models: frozenset[str] | None = None
    tools: frozenset[str] | None = None
    admin = False
    for item in items:
        kind, _, names = item.partition(":")
        if kind == "models":
            models = frozenset(n for n in names.split(",") if n) | (models or frozenset())
        elif kind == "tools":
            tools = frozenset(n for n in names.split(",") if n) | (tools or frozenset())
        elif item in admin_scopes:
            admin = True
    return Scopes(models=models, tools=tools, admin=admin)
