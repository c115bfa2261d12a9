"""Who is calling: every credential the gateway accepts, turned into a ``Principal``.

A bearer credential is one of three things, told apart before any verification: an Ironhold
API key (``ih-…``), an agent passport (a JWT whose issuer is this gateway's passport issuer),
or an OIDC token (a JWT from the configured identity provider). Anything else is refused.
The identity stage authenticates every call (default deny) and checks the model scope.
"""

from __future__ import annotations

from ironhold.core.errors import AuthenticationError, PermissionDeniedError
from ironhold.core.exchange import Exchange, Principal, Reply
from ironhold.core.pipeline import Handler
from ironhold.identity.keys import KEY_PREFIX, ApiKey, KeyService
from ironhold.identity.passports import PassportAuthority
from ironhold.identity.tokens import OidcVerifier, looks_like_jwt, peek


class Authenticator:
    """API keys, passports and OIDC tokens behind one ``authenticate``."""

    def __init__(self, keys: KeyService, passports: PassportAuthority | None,
                 oidc: OidcVerifier | None):
        self.keys = keys
        self.passports = passports
        self.oidc = oidc

    async def authenticate(self, authorization: str | None,
                           audience: str | None = None) -> Principal:
        if not authorization:
            raise AuthenticationError(
                "You didn't provide an API key. Send it as 'Authorization: Bearer KEY'.",
                code="missing_api_key",
            )
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationError("The Authorization header must be 'Bearer KEY'.")
        return await self.from_token(token.strip(), audience)

    async def from_token(self, token: str, audience: str | None = None) -> Principal:
        """``audience``: an OIDC token must have been issued for this resource (RFC 8707),
        instead of the configured ``identity.jwt.audience``."""
        if token.startswith(KEY_PREFIX):
            return (await self.keys.verify(token)).principal()
        if not looks_like_jwt(token):
            raise AuthenticationError("Incorrect API key provided.")
        header, claims = peek(token)
        issuer = claims.get("iss")
        if self.passports is not None and issuer == self.passports.issuer:
            return await self.passports.verify(token, header)
        if self.oidc is not None and issuer == self.oidc.issuer:
            return await self.oidc.verify(token, header, audience)
        raise AuthenticationError("The token's issuer is not trusted by this gateway.",
                                  code="invalid_token")

    def revoke_key(self, id_or_name: str, by_name: bool = True) -> list[ApiKey]:
        """Revoke keys, and every passport issued for them. Blocking."""
        revoked = self.keys.revoke(id_or_name, by_name)
        if self.passports is not None:
            for key in revoked:
                self.passports.revoke_subject(key.id)
        return revoked


class IdentityStage:
    """Authenticates every call (default deny) and checks the caller may use the model."""

    def __init__(self, authenticator: Authenticator):
        self.authenticator = authenticator

    async def __call__(self, exchange: Exchange, next_: Handler) -> Reply:
        principal = await self.authenticator.authenticate(exchange.credential)
        exchange.principal = principal
        if not principal.may_use(exchange.model):
            # Said the same way whether or not the group exists, so keys can't probe for names.
            raise PermissionDeniedError(
                f"This credential may not use the model '{exchange.model}'.", param="model"
            )
        return await next_(exchange)
