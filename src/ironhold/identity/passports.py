"""Agent passports: short-lived tokens for an agent acting for a principal (RFC 8693).

A passport is a JWT signed with the gateway's Ed25519 key (JWS ``alg: Ed25519``, the fully
specified EdDSA of RFC 9864). ``sub`` is the chain's root (the key or user the work is for);
the nested ``act`` claims name the agents, the current one outermost, as RFC 8693 §4.1 says.
The ``ih`` claim holds what the agent may do: scopes and limits, which can only narrow along a
chain, and the limits of every ancestor (a parent's budget is shared by all its children).

Every passport is also a row in ``ironhold_passports``: revoking one revokes every passport
exchanged from it, and revoking a key revokes every passport issued for it. Verification asks
the store (cached for ``auth.cache_ttl``), so a revoked passport stops working within that time
on every replica.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from joserfc import jwt
from joserfc.jwk import KeySet, OKPKey
from sqlalchemy import insert, select, update

from ironhold.config.security import PassportConfig
from ironhold.core.errors import AuthenticationError, InvalidRequestError
from ironhold.core.principal import Principal, Quota, Scopes
from ironhold.identity.tokens import peek, verify_jwt
from ironhold.store.sql import SqlStore, passports

ALGORITHM = "Ed25519"
#: The audience of every passport: only an Ironhold gateway accepts them.
AUDIENCE = "ironhold"
_AGENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@:/-]{0,99}")


@dataclass(frozen=True)
class IssuedPassport:
    token: str
    jti: str
    expires_in: int
    principal: Principal


class PassportAuthority:
    """Issues, verifies and revokes passports."""

    def __init__(self, config: PassportConfig, key: Ed25519PrivateKey, store: SqlStore,
                 cache_ttl: float = 5.0):
        self.config = config
        self.issuer = config.issuer
        self._key = OKPKey.import_key(key)
        self._key.ensure_kid()
        self._public = KeySet([OKPKey.import_key(self._key.as_dict(private=False))])
        self._store = store
        self._ttl = cache_ttl
        #: jti -> (revoked, checked at)
        self._revoked: dict[str, tuple[bool, float]] = {}

    def jwks(self) -> dict[str, Any]:
        """The public key set, for ``/.well-known/jwks.json``."""
        return {"keys": [{**k.as_dict(private=False), "alg": ALGORITHM, "use": "sig"}
                         for k in self._public.keys]}

    # -- issuing ------------------------------------------------------------------------------

    def issue(self, subject: Principal, agent: str, *, scopes: Scopes | None = None,
              quota: Quota | None = None, ttl: float | None = None) -> IssuedPassport:
        """A passport for ``agent`` acting for ``subject`` (a key, a user, or an agent holding
        a passport, which makes the chain one longer). Blocking: it writes the store."""
        if not _AGENT_NAME.fullmatch(agent):
            raise InvalidRequestError(
                "The actor must be an agent name: 1 to 100 letters, digits and ._@:/- "
                "starting with a letter or digit.", param="actor_token")
        agent_id = f"agent:{agent}"
        chain = (*subject.chain, agent_id) if subject.chain else (subject.id, agent_id)
        if len(chain) - 1 > self.config.max_depth:
            raise InvalidRequestError(
                f"Delegation is limited to {self.config.max_depth} agents in a chain; this "
                f"would make {len(chain) - 1}.", code="delegation_too_deep")
        if agent_id in chain[:-1]:
            raise InvalidRequestError(f"The agent '{agent}' is already in this chain.",
                                      code="delegation_loop")
        if scopes is None:
            # Models and tools are inherited; admin never is: an agent holds admin only when
            # the subject asked for it by name (``scope=admin``).
            scopes = Scopes(models=subject.scopes.models, tools=subject.scopes.tools)
        elif not subject.scopes.covers(scopes):
            raise InvalidRequestError(
                "The requested scope is wider than the subject's: a passport can only narrow "
                f"(subject has {' '.join(subject.scopes.as_list()) or 'all models and tools'}).",
                code="invalid_scope", param="scope")
        if subject.kind == "agent":
            # Unset caps are inherited; a set one may not be looser than the parent's.
            quota = (quota or Quota()).filled_from(subject.quota)
            if not subject.quota.covers(quota):
                raise InvalidRequestError(
                    "The requested limits are looser than the subject passport's: a passport "
                    "can only narrow.", code="invalid_scope")
        quota = quota or Quota()
        now = time.time()
        lifetime = min(ttl or self.config.default_ttl, self.config.max_ttl)
        expires = now + lifetime
        if subject.expires_at is not None:
            expires = min(expires, subject.expires_at)
        if expires <= now:
            raise InvalidRequestError("The subject token has expired.", code="invalid_grant")
        jti = "pp_" + secrets.token_hex(12)
        # What the new passport's counters inherit: the subject's own and its ancestors'.
        inherited = subject.quotas()
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": AUDIENCE,
            "sub": chain[0],
            "iat": int(now),
            "nbf": int(now),
            "exp": int(expires),
            "jti": jti,
            "scope": " ".join(scopes.as_list()),
            "act": _nest(chain[1:]),
            "ih": {
                "name": agent,
                "tenant": subject.tenant,
                "groups": list(subject.groups),
                "models": _listed(scopes.models),
                "tools": _listed(scopes.tools),
                "admin": scopes.admin,
                "quota": _quota_claim(quota),
                "inherited": [[cid, _quota_claim(q)] for cid, q in inherited
                              if not q.is_empty()],
                "parent": subject.passport_id,
            },
        }
        token = jwt.encode({"alg": ALGORITHM, "kid": self._key.kid, "typ": "JWT"}, claims,
                           self._key, algorithms=[ALGORITHM])
        with self._store.engine.begin() as conn:
            conn.execute(insert(passports).values(
                jti=jti, parent=subject.passport_id, subject=chain[0], agent=agent_id,
                chain=orjson.dumps(list(chain)).decode(), issued_at=now, expires_at=expires,
                revoked_at=None))
        return IssuedPassport(token=token, jti=jti, expires_in=int(expires - now),
                              principal=self._principal(claims))

    # -- verifying ----------------------------------------------------------------------------

    async def verify(self, token: str, header: dict[str, Any] | None = None) -> Principal:
        if header is None:
            header, _ = peek(token)
        claims = verify_jwt(token, header, self._public, algorithms=[ALGORITHM], issuer=self.issuer,
                            audience=AUDIENCE, leeway=5)
        principal = self._principal(claims)
        if await self._is_revoked(principal.passport_id or ""):
            raise AuthenticationError("This passport has been revoked.", code="revoked_token")
        return principal

    def _principal(self, claims: dict[str, Any]) -> Principal:
        try:
            chain = (claims["sub"], *_unnest(claims["act"]))
            ih = claims["ih"]
            principal = Principal(
                id=chain[-1],
                kind="agent",
                name=ih["name"],
                scopes=Scopes(models=_set(ih["models"]), tools=_set(ih["tools"]),
                              admin=bool(ih["admin"])),
                quota=Quota(**ih["quota"]),
                tenant=ih["tenant"],
                groups=tuple(ih["groups"]),
                chain=chain,
                passport_id=claims["jti"],
                expires_at=float(claims["exp"]),
                inherited=tuple((cid, Quota(**q)) for cid, q in ih["inherited"]),
            )
        except (KeyError, TypeError, ValueError):
            raise AuthenticationError("The passport is malformed.", code="invalid_token") from None
        if len(chain) - 1 > self.config.max_depth:
            raise AuthenticationError("The passport's delegation chain is too deep.",
                                      code="delegation_too_deep")
        return principal

    async def _is_revoked(self, jti: str) -> bool:
        now = time.monotonic()
        cached = self._revoked.get(jti)
        if cached is not None and now - cached[1] < self._ttl:
            return cached[0]
        revoked = await asyncio.to_thread(self._lookup, jti)
        if len(self._revoked) > 100_000:
            self._revoked.clear()
        self._revoked[jti] = (revoked, now)
        return revoked

    def _lookup(self, jti: str) -> bool:
        with self._store.engine.connect() as conn:
            row = conn.execute(select(passports.c.revoked_at).where(
                passports.c.jti == jti)).first()
        # Unknown to the store counts as revoked: every real passport has a row.
        return row is None or row.revoked_at is not None

    # -- revoking -----------------------------------------------------------------------------

    def revoke(self, jti: str) -> list[str]:
        """Revoke a passport and every passport exchanged from it. Blocking."""
        return self._revoke_tree(select(passports.c.jti).where(passports.c.jti == jti))

    def revoke_subject(self, subject_id: str) -> list[str]:
        """Revoke every passport issued for a key or user (e.g. when the key is revoked)."""
        return self._revoke_tree(select(passports.c.jti).where(
            passports.c.subject == subject_id))

    def _revoke_tree(self, roots: Any) -> list[str]:
        now = time.time()
        revoked: list[str] = []
        with self._store.engine.begin() as conn:
            frontier = [r.jti for r in conn.execute(roots)]
            seen: set[str] = set()
            while frontier:
                seen.update(frontier)
                result = conn.execute(update(passports).where(
                    passports.c.jti.in_(frontier), passports.c.revoked_at.is_(None)
                ).values(revoked_at=now).returning(passports.c.jti))
                revoked.extend(r.jti for r in result)
                children = conn.execute(select(passports.c.jti).where(
                    passports.c.parent.in_(frontier))).all()
                frontier = [c.jti for c in children if c.jti not in seen]
        for jti in seen:
            self._revoked[jti] = (True, time.monotonic())
        return revoked

    def list_passports(self, subject: str | None = None) -> list[dict[str, Any]]:
        query = select(passports).order_by(passports.c.issued_at)
        if subject is not None:
            query = query.where(passports.c.subject == subject)
        with self._store.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        now = time.time()
        return [{
            "id": r["jti"],
            "parent": r["parent"],
            "agent": r["agent"],
            "chain": orjson.loads(r["chain"]),
            "issued_at": int(r["issued_at"]),
            "expires_at": int(r["expires_at"]),
            "status": "revoked" if r["revoked_at"] is not None else
                      "expired" if r["expires_at"] <= now else "active",
        } for r in rows]


def _nest(agents: tuple[str, ...]) -> dict[str, Any]:
    """RFC 8693 ``act``: the current actor outermost, earlier actors nested inside."""
    act: dict[str, Any] = {}
    for agent in agents:
        act = {"sub": agent, "act": act} if act else {"sub": agent}
    return act


def _unnest(act: Any) -> tuple[str, ...]:
    out: list[str] = []
    while act:
        if not isinstance(act, dict) or not isinstance(act.get("sub"), str):
            raise ValueError("bad act claim")
        out.append(act["sub"])
        act = act.get("act")
        if len(out) > 32:
            raise ValueError("act nested too deep")
    return tuple(reversed(out))


def _listed(names: frozenset[str] | None) -> list[str] | None:
    return None if names is None else sorted(names)


def _set(names: Any) -> frozenset[str] | None:
    if names is None:
        return None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError("scope list")
    return frozenset(names)


def _quota_claim(quota: Quota) -> dict[str, Any]:
    return {k: v for k, v in (
        ("rpm", quota.rpm), ("tpm", quota.tpm), ("concurrency", quota.concurrency),
        ("budget_usd_daily", quota.budget_usd_daily),
        ("budget_usd_monthly", quota.budget_usd_monthly)) if v is not None}
