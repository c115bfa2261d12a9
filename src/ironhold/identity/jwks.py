"""An identity provider's public keys (JWKS), from a file or a URL, cached and rotated.

A file is re-read when its modification time changes. A URL is fetched again after
``cache_ttl``, or sooner when a token names a key id not in the set (the provider rotated its
keys), but never more often than ``min_refresh``: tokens with made-up key ids cannot make the
gateway hammer the provider. Stale keys are refreshed in the background while they keep
verifying tokens (stale while revalidating); if a refresh fails, the keys held stay in use.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path

import aiohttp
import orjson
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from ironhold.config.security import JwksConfig
from ironhold.core.errors import AuthenticationError, ConfigError

log = logging.getLogger("ironhold.identity")

_MAX_JWKS_BYTES = 1024 * 1024


def parse_key_set(raw: bytes, source: str) -> KeySet:
    """A JWKS document with public asymmetric keys only."""
    try:
        data = orjson.loads(raw)
        keys = data["keys"]
        if not isinstance(keys, list) or not keys:
            raise ValueError("'keys' must be a non-empty list")
        for key in keys:
            if key.get("kty") == "oct":
                raise ValueError("a symmetric ('oct') key is not an identity provider's key")
            if "d" in key:
                raise ValueError("it holds a private key; publish only public keys")
        return KeySet.import_key_set(data)
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError,
            JoseError) as exc:
        raise ConfigError(f"{source}: not a usable JWKS: {exc}") from None


class JwksSource:
    """The current key set; ``keys(kid)`` refreshes it when ``kid`` is unknown."""

    def __init__(self, config: JwksConfig, base_dir: Path):
        self._config = config
        self._path = None if config.file is None else (base_dir / config.file).resolve()
        self._url = None if config.url is None else str(config.url)
        self._keys: KeySet | None = None
        self._kids: frozenset[str] = frozenset()
        self._loaded_at = -float("inf")
        self._tried_at = -float("inf")
        self._checked_at = -float("inf")
        self._mtime: float | None = None
        self._lock = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None
        #: The background refresh of stale keys, if one is running (owned here).
        self._revalidation: asyncio.Task[None] | None = None

    def load_now(self) -> None:
        """Read a JWKS file at start-up, so a broken one stops the gateway from starting."""
        if self._path is not None:
            self._read_file()

    async def keys(self, kid: str | None) -> KeySet:
        unknown = kid is not None and kid not in self._kids
        now = time.monotonic()
        if self._path is not None:
            # A stat() at most once a second, or when a token names a key not yet seen.
            if unknown or now - self._checked_at > 1.0:
                self._checked_at = now
                self._refresh_file()
        elif self._keys is None or unknown:
            await self._refresh_url(force=True)  # nothing to verify this token with yet
        elif now - self._loaded_at > self._config.cache_ttl:
            # Stale while revalidating: the keys held verify this token now, and a refresh
            # runs beside it, so a slow or failing JWKS URL holds up no request.
            self._revalidate()
        if self._keys is None:
            raise AuthenticationError("The identity provider's keys are not available.",
                                      code="jwks_unavailable")
        return self._keys

    def _revalidate(self) -> None:
        if self._revalidation is not None and not self._revalidation.done():
            return
        if time.monotonic() - self._tried_at < self._config.min_refresh:
            return  # failed recently: try again later, keep serving the keys held
        self._revalidation = asyncio.get_running_loop().create_task(
            self._refresh_url(force=False), name="jwks-revalidate")

    async def _refresh_url(self, force: bool) -> None:
        if force and time.monotonic() - self._tried_at < self._config.min_refresh:
            return
        seen = self._tried_at
        async with self._lock:
            if self._tried_at != seen:
                return  # another request fetched while this one waited
            self._tried_at = time.monotonic()
            try:
                await self._fetch()
            except (aiohttp.ClientError, TimeoutError, ConfigError) as exc:
                log.warning("jwks_refresh_failed", extra={"error": str(exc)[:200]})

    def _refresh_file(self) -> None:
        assert self._path is not None
        try:
            mtime = self._path.stat().st_mtime
        except OSError as exc:
            if self._keys is None:
                raise AuthenticationError("The identity provider's keys are not available.",
                                          code="jwks_unavailable") from exc
            return
        if mtime != self._mtime:
            try:
                self._read_file()
            except ConfigError as exc:
                # A half-written file during rotation: keep the old keys until it is whole.
                log.warning("jwks_reload_failed", extra={"error": exc.message[:200]})

    def _read_file(self) -> None:
        assert self._path is not None
        try:
            stat = self._path.stat()
            raw = self._path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"identity.jwt.jwks.file: cannot read {self._path}: "
                              f"{exc.strerror}") from None
        self._install(parse_key_set(raw, str(self._path)))
        self._mtime = stat.st_mtime

    async def _fetch(self) -> None:
        assert self._url is not None
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        async with self._session.get(self._url) as response:
            if response.status != 200:
                raise ConfigError(f"JWKS URL answered {response.status}")
            raw = await response.content.read(_MAX_JWKS_BYTES + 1)
            if len(raw) > _MAX_JWKS_BYTES:
                raise ConfigError("JWKS document is larger than 1 MiB")
        self._install(parse_key_set(raw, "identity.jwt.jwks.url"))
        log.info("jwks_refreshed", extra={"keys": len(self._kids)})

    def _install(self, keys: KeySet) -> None:
        self._keys = keys
        self._kids = frozenset(k.kid for k in keys.keys if k.kid)
        self._loaded_at = time.monotonic()

    async def close(self) -> None:
        if self._revalidation is not None:
            self._revalidation.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._revalidation
        if self._session is not None:
            await self._session.close()
