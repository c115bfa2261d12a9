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
from typing import TYPE_CHECKING, Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from joserfc import jwt
from joserfc.jwk import KeySet, OKPKey

from ironhold.config.security import PassportConfig
from ironhold.core.errors import AuthenticationError, InvalidRequestError
from ironhold.core.principal import Principal, Quota, Scopes
from ironhold.identity.tokens import peek, verify_jwt

if TYPE_CHECKING:
    from ironhold.identity.repository import PassportRepository

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


@dataclass(frozen=True)
class PassportRecord:
    """A passport as stored: who it is for, who holds it, and whether it still counts."""

    jti: str
    #: The passport this one was exchanged from (None: issued for a key or user).
    parent: str | None
    #: The chain's root: the key or user the work is for.
    subject: str
    agent: str
    #: The subject, then each agent in order.
    chain: tuple[str, ...]
    issued_at: float
    expires_at: float
    revoked_at: float | None = None

    def status(self, now: float | None = None) -> Literal["active", "expired", "revoked"]:
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if self.expires_at <= (now or time.time()) else "active"

    def as_dict(self, now: float | None = None) -> dict[str, Any]:
        """The admin API's view."""
        return {"id": self.jti, "parent": self.parent, "agent": self.agent,
                "chain": list(self.chain), "issued_at": int(self.issued_at),
                "expires_at": int(self.expires_at), "status": self.status(now)}


class PassportAuthority:
    """Issues, verifies and revokes passports, kept in a ``PassportRepository``."""

    def __init__(self, config: PassportConfig, key: Ed25519PrivateKey,
                 repository: PassportRepository, cache_ttl: float = 5.0):
        self.config = config
        self.issuer = config.issuer
        self._key = OKPKey.import_key(key)
        self._key.ensure_kid()
        self._public = KeySet([OKPKey.import_key(self._key.as_dict(private=False))])
        self.repository = repository
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
        self.repository.add(PassportRecord(
            jti=jti, parent=subject.passport_id, subject=chain[0], agent=agent_id,
            chain=tuple(chain), issued_at=now, expires_at=expires))
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
        revoked = await asyncio.to_thread(self.repository.revoked, jti)
        if len(self._revoked) > 100_000:
            self._revoked.clear()
        self._revoked[jti] = (revoked, now)
        return revoked

    # -- revoking -----------------------------------------------------------------------------

    def revoke(self, jti: str) -> list[str]:
        """Revoke a passport and every passport exchanged from it. Blocking."""
        return self._revoked_now(*self.repository.revoke_tree(jti=jti, now=time.time()))

    def revoke_subject(self, subject_id: str) -> list[str]:
        """Revoke every passport issued for a key or user (e.g. when the key is revoked)."""
        return self._revoked_now(*self.repository.revoke_tree(subject=subject_id,
                                                              now=time.time()))

    def _revoked_now(self, revoked: list[str], trees: set[str]) -> list[str]:
        for jti in trees:
            self._revoked[jti] = (True, time.monotonic())
        return revoked

    def list_passports(self, subject: str | None = None) -> list[PassportRecord]:
        return self.repository.all(subject)


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
