"""API keys: created once, shown once, stored only as a keyed hash (HMAC-SHA256).

A key belongs to a tenant (optional), is scoped to model groups, tools and admin, may expire,
and carries its own limits (requests and tokens per minute, concurrency, spend budgets).

Verification hashes the presented key with the server's secret, looks the hash up, and compares
in constant time. Verified keys are cached for ``auth.cache_ttl`` seconds, which bounds how long
a revoked key keeps working on a running gateway; expiry is checked on every call.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ironhold.core.errors import AuthenticationError, ConfigError, InvalidRequestError
from ironhold.core.principal import MAX_LIFETIME_SECONDS, NO_QUOTA, Principal, Quota, Scopes

if TYPE_CHECKING:
    from ironhold.identity.repository import KeyRepository

KEY_PREFIX = "ih-"
_SECRET_FILE = "key-secret"


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    prefix: str
    models: tuple[str, ...] | None
    admin: bool
    created_at: float
    revoked_at: float | None
    tenant: str | None = None
    tools: tuple[str, ...] | None = None
    expires_at: float | None = None
    quota: Quota = NO_QUOTA

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def expired(self, now: float | None = None) -> bool:
        return self.expires_at is not None and (now or time.time()) >= self.expires_at

    @property
    def status(self) -> Literal["active", "expired", "revoked"]:
        if not self.active:
            return "revoked"
        return "expired" if self.expired() else "active"

    def principal(self) -> Principal:
        """Who calls with this key."""
        return self._principal

    @cached_property
    def _principal(self) -> Principal:
        # Both are immutable: made once per key and shared by every request the key's cache
        # entry serves (not a field, so not in the key's equality or repr).
        return Principal(
            id=self.id,
            kind="key",
            name=self.name,
            scopes=Scopes(
                models=None if self.models is None else frozenset(self.models),
                tools=None if self.tools is None else frozenset(self.tools),
                admin=self.admin,
            ),
            quota=self.quota,
            tenant=self.tenant,
            expires_at=self.expires_at,
        )

    def as_dict(self) -> dict[str, object]:
        q = self.quota
        return {
            "id": self.id,
            "name": self.name,
            "prefix": self.prefix,
            "tenant": self.tenant,
            "models": list(self.models) if self.models is not None else None,
            "tools": list(self.tools) if self.tools is not None else None,
            "admin": self.admin,
            "limits": {
                "rpm": q.rpm,
                "tpm": q.tpm,
                "concurrency": q.concurrency,
                "budget_usd_daily": q.budget_usd_daily,
                "budget_usd_monthly": q.budget_usd_monthly,
            },
            "status": self.status,
            "created_at": int(self.created_at),
            "expires_at": int(self.expires_at) if self.expires_at else None,
            "revoked_at": int(self.revoked_at) if self.revoked_at else None,
        }


def load_key_secret(configured: str | None, state_dir: Path) -> bytes:
    """The configured secret, or one generated once into the state directory (mode 0600)."""
    if configured:
        if len(configured) < 16:
            raise ConfigError("auth.key_secret: must be at least 16 characters")
        return configured.encode()
    path = state_dir / _SECRET_FILE
    if not path.exists():
        state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


class KeyService:
    """Creates, verifies and revokes keys over a ``KeyRepository``."""

    def __init__(self, repository: KeyRepository, secret: bytes, cache_ttl: float = 5.0):
        self.repository = repository
        self._secret = secret
        self._ttl = cache_ttl
        # hash -> (key, expires at); only valid keys are cached, so the size is bounded by
        # the number of real keys in use, not by what attackers send.
        self._cache: dict[str, tuple[ApiKey, float]] = {}

    def subkey(self, purpose: str) -> bytes:
        """A key for another use (signing MCP session ids), derived from the key-hashing
        secret: the same on every worker and replica that shares it."""
        return hmac.digest(self._secret, b"ironhold-subkey:" + purpose.encode(), "sha256")

    def _hash(self, secret_key: str) -> str:
        return hmac.digest(self._secret, secret_key.encode(), "sha256").hex()

    # -- administration (synchronous; the CLI calls these directly) --------------------------

    def create(
        self,
        name: str,
        models: list[str] | None = None,
        admin: bool = False,
        *,
        tenant: str | None = None,
        tools: list[str] | None = None,
        expires_in: float | None = None,
        quota: Quota | None = None,
    ) -> tuple[ApiKey, str]:
        """Create a key; returns it and its secret, which is never stored or shown again."""
        name = name.strip()
        if not name or len(name) > 200:
            raise InvalidRequestError("a key name must be 1 to 200 characters", param="name")
        if tenant is not None:
            tenant = tenant.strip()
            if not tenant or len(tenant) > 200:
                raise InvalidRequestError("a tenant must be 1 to 200 characters", param="tenant")
        if expires_in is not None and not 0 < expires_in <= MAX_LIFETIME_SECONDS:
            # ``not 0 < x <= max`` is also true for NaN.
            raise InvalidRequestError(
                f"expires_in must be more than 0 and at most {MAX_LIFETIME_SECONDS} seconds "
                "(ten years)", param="expires_in")
        quota = quota or Quota()
        quota.check()
        models = _clean(models)
        tools = _clean(tools)
        now = time.time()
        secret_key = KEY_PREFIX + secrets.token_urlsafe(32)
        key = ApiKey(
            id="key_" + secrets.token_hex(8),
            name=name,
            prefix=secret_key[:10],
            models=tuple(models) if models is not None else None,
            admin=admin,
            created_at=now,
            revoked_at=None,
            tenant=tenant,
            tools=tuple(tools) if tools is not None else None,
            expires_at=now + expires_in if expires_in is not None else None,
            quota=quota,
        )
        self.repository.add(key, self._hash(secret_key))
        return key, secret_key

    def list_keys(self, include_revoked: bool = False) -> list[ApiKey]:
        return self.repository.all(include_revoked)

    def revoke(self, id_or_name: str, by_name: bool = True) -> list[ApiKey]:
        """Revoke the key with this id, or (``by_name``) every active key with this name."""
        revoked = self.repository.revoke(id_or_name, by_name, time.time())
        self._cache.clear()
        return revoked

    # -- the hot path ---------------------------------------------------------------------------

    async def verify(self, secret_key: str) -> ApiKey:
        if not secret_key.startswith(KEY_PREFIX) or len(secret_key) > 128:
            raise AuthenticationError("Incorrect API key provided.")
        digest = self._hash(secret_key)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[1] > now:
            key = cached[0]
        else:
            found = await asyncio.to_thread(self._find_hash, digest)
            if found is None or not found.active:
                self._cache.pop(digest, None)
                raise AuthenticationError("Incorrect API key provided.")
            key = found
            self._cache[digest] = (key, now + self._ttl)
        if key.expired():
            # Only the key's holder can see this, so saying why helps and leaks nothing.
            raise AuthenticationError("This API key has expired.", code="expired_api_key")
        return key

    def find(self, secret_key: str) -> ApiKey | None:
        """The key this secret belongs to (active or revoked), or None. Blocking."""
        return self._find_hash(self._hash(secret_key))

    def _find_hash(self, digest: str) -> ApiKey | None:
        found = self.repository.by_digest(digest)
        if found is None or not hmac.compare_digest(found[1], digest):
            return None
        return found[0]


def _clean(names: list[str] | None) -> list[str] | None:
    return None if names is None else sorted({n.strip() for n in names if n.strip()})
