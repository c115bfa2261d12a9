"""Who is calling: API keys, OIDC tokens from an identity provider, and agent passports."""

from ironhold.identity.keys import ApiKey, KeyService, load_key_secret
from ironhold.identity.passports import PassportAuthority
from ironhold.identity.stage import Authenticator, IdentityStage
from ironhold.identity.tokens import OidcVerifier

__all__ = ["ApiKey", "Authenticator", "IdentityStage", "KeyService", "OidcVerifier",
           "PassportAuthority", "load_key_secret"]
