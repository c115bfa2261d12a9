"""A stand-in for an organisation's OIDC identity provider: real keys, real signatures, a JWKS
file or a JWKS endpoint on loopback. It is not part of Ironhold; it issues the tokens Ironhold
must accept or refuse."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

from aiohttp import web
from joserfc import jwt
from joserfc.jwk import ECKey, OKPKey, RSAKey

from tests.servers import LoopThread

Key = RSAKey | ECKey | OKPKey


class IdentityProvider:
    def __init__(self, issuer: str = "https://idp.test", audience: str = "ironhold"):
        self.issuer = issuer
        self.audience = audience
        self.keys: list[Key] = [RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})]
        self.fetches = 0
        #: Seconds the JWKS endpoint waits before answering (a slow or hung provider), and
        #: how many of its answers are still being held back.
        self.delay = 0.0
        self.pending = 0
        self._thread: LoopThread | None = None
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def key(self) -> Key:
        return self.keys[-1]

    def jwks(self) -> dict[str, Any]:
        return {"keys": [k.as_dict(private=False) for k in self.keys]}

    def write_jwks(self, path: Path) -> Path:
        # Written whole and renamed, as a rotation job would do.
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.jwks()))
        tmp.replace(path)
        return path

    def rotate(self, kid: str, keep_old: bool = False) -> Key:
        new = RSAKey.generate_key(2048, parameters={"kid": kid})
        self.keys = [*self.keys, new] if keep_old else [new]
        return new

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {"iss": self.issuer, "aud": self.audience, "sub": "alice",
                                  "name": "Alice", "iat": now, "exp": now + 300,
                                  "tenant": "acme", "groups": ["staff"]}
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def token(self, key: Key | None = None, alg: str | None = None,
              header: dict[str, Any] | None = None, **overrides: Any) -> str:
        key = key or self.key
        alg = alg or ("RS256" if isinstance(key, RSAKey) else
                      "ES256" if isinstance(key, ECKey) else "Ed25519")
        head = {"alg": alg, "kid": key.kid, **(header or {})}
        return jwt.encode(head, self.claims(**overrides), key, algorithms=[alg])

    # -- hostile tokens, built by hand because no good library will make them -----------------

    def unsigned(self, **overrides: Any) -> str:
        """``alg: none`` with an empty signature."""
        return f"{_b64(json.dumps({'alg': 'none', 'typ': 'JWT'}))}." \
               f"{_b64(json.dumps(self.claims(**overrides)))}."

    def hs256_with_public_key(self, **overrides: Any) -> str:
        """Key confusion: HMAC-SHA256 keyed with the provider's *public* key (PEM)."""
        assert isinstance(self.key, RSAKey)
        secret = self.key.as_pem(private=False)
        signing_input = (f"{_b64(json.dumps({'alg': 'HS256', 'kid': self.key.kid}))}."
                         f"{_b64(json.dumps(self.claims(**overrides)))}")
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{_b64(mac)}"

    # -- a JWKS endpoint ------------------------------------------------------------------------

    def serve(self) -> str:
        async def handler(_: web.Request) -> web.Response:
            self.fetches += 1
            self.pending += 1
            try:
                await asyncio.sleep(self.delay)
            finally:
                self.pending -= 1
            return web.json_response(self.jwks())

        async def start() -> int:
            app = web.Application()
            app.router.add_get("/jwks.json", handler)
            self._runner = web.AppRunner(app, access_log=None)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            return int(self._runner.addresses[0][1])

        self._thread = LoopThread()
        self.port = self._thread.call(start())
        return f"http://127.0.0.1:{self.port}/jwks.json"

    def close(self) -> None:
        if self._thread is not None and self._runner is not None:
            self._thread.call(self._runner.cleanup())
            self._thread.stop()


def _b64(data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def tamper(token: str) -> str:
    """The same token with one claim changed and the original signature kept."""
    head, body, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["sub"] = "mallory"
    return f"{head}.{_b64(json.dumps(claims))}.{sig}"
