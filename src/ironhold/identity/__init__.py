"""Who is calling: API keys now; OIDC tokens and agent passports later."""

from ironhold.identity.keys import ApiKey, KeyService, load_key_secret
from ironhold.identity.stage import IdentityStage

__all__ = ["ApiKey", "IdentityStage", "KeyService", "load_key_secret"]
