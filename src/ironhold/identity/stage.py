"""The identity stage: the credential on the exchange becomes a ``Principal``, or a refusal."""

from __future__ import annotations

from ironhold.core.errors import AuthenticationError, PermissionDeniedError
from ironhold.core.exchange import Exchange, Principal, Reply
from ironhold.core.pipeline import Handler
from ironhold.identity.keys import KeyService


class IdentityStage:
    """Authenticates every call (default deny) and checks the key may use the model."""

    def __init__(self, keys: KeyService):
        self._keys = keys

    async def authenticate(self, authorization: str | None) -> Principal:
        if not authorization:
            raise AuthenticationError(
                "You didn't provide an API key. Send it as 'Authorization: Bearer KEY'.",
                code="missing_api_key",
            )
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationError("The Authorization header must be 'Bearer KEY'.")
        key = await self._keys.verify(token.strip())
        return key.principal()

    async def __call__(self, exchange: Exchange, next_: Handler) -> Reply:
        principal = await self.authenticate(exchange.credential)
        exchange.principal = principal
        if not principal.may_use(exchange.model):
            # Said the same way whether or not the group exists, so keys can't probe for names.
            raise PermissionDeniedError(
                f"This API key may not use the model '{exchange.model}'.", param="model"
            )
        return await next_(exchange)
