"""Who is calling: the ``Principal`` every stage after identity sees.

Three kinds of caller: a service **key** (an Ironhold API key), a **user** (an OIDC token from
the organisation's identity provider) and an **agent** (an Ironhold passport: an agent acting
for a user or key, possibly through other agents). A principal carries what it may do (scopes),
the limits that apply to it, and for agents the whole delegation chain.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Literal, TypeVar

from ironhold.core.errors import InvalidRequestError

_N = TypeVar("_N", int, float)

#: Bounds on every limit a credential can carry: far above any real use, far below what a
#: counter, a JSON record or a Redis script argument can hold.
MAX_COUNT = 2**31 - 1
MAX_BUDGET_USD = 1e9
#: The longest a credential may be made to last (ten years), for the same reason.
MAX_LIFETIME_SECONDS = 10 * 365 * 86400

PrincipalKind = Literal["key", "user", "agent"]


@dataclass(frozen=True, slots=True)
class Scopes:
    """What a principal may touch. ``None`` means every model group (or tool)."""

    models: frozenset[str] | None = None
    tools: frozenset[str] | None = None
    admin: bool = False

    def may_use(self, model: str) -> bool:
        return self.models is None or model in self.models

    def may_call(self, tool: str) -> bool:
        return self.tools is None or tool in self.tools

    def covers(self, other: Scopes) -> bool:
        """True if everything ``other`` allows is allowed here (``other`` is no wider)."""
        return (
            _covers(self.models, other.models)
            and _covers(self.tools, other.tools)
            and (self.admin or not other.admin)
        )

    def as_list(self) -> list[str]:
        """The OAuth ``scope`` form: ``models:a,b``, ``tools:x``, ``admin`` (absent: all)."""
        out: list[str] = []
        if self.models is not None:
            out.append("models:" + ",".join(sorted(self.models)))
        if self.tools is not None:
            out.append("tools:" + ",".join(sorted(self.tools)))
        if self.admin:
            out.append("admin")
        return out


def _covers(wide: frozenset[str] | None, narrow: frozenset[str] | None) -> bool:
    if wide is None:
        return True
    return narrow is not None and narrow <= wide


@dataclass(frozen=True, slots=True)
class Quota:
    """Limits that apply to one principal (``None``: no limit of that kind)."""

    rpm: int | None = None
    tpm: int | None = None
    concurrency: int | None = None
    budget_usd_daily: float | None = None
    budget_usd_monthly: float | None = None

    def narrowed(self, other: Quota) -> Quota:
        """The tighter of the two for every limit (delegation may only narrow)."""
        return Quota(
            rpm=_least(self.rpm, other.rpm),
            tpm=_least(self.tpm, other.tpm),
            concurrency=_least(self.concurrency, other.concurrency),
            budget_usd_daily=_least(self.budget_usd_daily, other.budget_usd_daily),
            budget_usd_monthly=_least(self.budget_usd_monthly, other.budget_usd_monthly),
        )

    def filled_from(self, other: Quota) -> Quota:
        """This quota, with the limits it leaves unset taken from ``other``."""
        return Quota(
            rpm=self.rpm if self.rpm is not None else other.rpm,
            tpm=self.tpm if self.tpm is not None else other.tpm,
            concurrency=self.concurrency if self.concurrency is not None else other.concurrency,
            budget_usd_daily=self.budget_usd_daily if self.budget_usd_daily is not None
            else other.budget_usd_daily,
            budget_usd_monthly=self.budget_usd_monthly if self.budget_usd_monthly is not None
            else other.budget_usd_monthly,
        )

    def covers(self, other: Quota) -> bool:
        """True if ``other`` is nowhere looser than this."""
        return all(
            mine is None or (theirs is not None and theirs <= mine)
            for mine, theirs in (
                (self.rpm, other.rpm),
                (self.tpm, other.tpm),
                (self.concurrency, other.concurrency),
                (self.budget_usd_daily, other.budget_usd_daily),
                (self.budget_usd_monthly, other.budget_usd_monthly),
            )
        )

    def is_empty(self) -> bool:
        return self == NO_QUOTA

    def check(self) -> None:
        """Refuse a limit that is not a positive number within bounds, naming it."""
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            high = MAX_BUDGET_USD if f.name.startswith("budget") else MAX_COUNT
            if isinstance(value, bool) or not isinstance(value, int | float) \
                    or not math.isfinite(value) or not 0 < value <= high:
                raise InvalidRequestError(
                    f"'{f.name}' must be a number more than 0 and at most {high:g}.",
                    param=f.name)


NO_QUOTA = Quota()


def _least(a: _N | None, b: _N | None) -> _N | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller."""

    #: Stable id: ``key_…`` for keys, ``user:<sub>`` for OIDC users, ``agent:<name>`` for agents.
    id: str
    kind: PrincipalKind
    name: str
    scopes: Scopes = field(default_factory=Scopes)
    quota: Quota = NO_QUOTA
    tenant: str | None = None
    groups: tuple[str, ...] = ()
    #: For agents: who the passport was issued for, then each actor in order, this agent last
    #: (``("key_ab12", "agent:planner", "agent:coder")``). Empty for keys and users.
    chain: tuple[str, ...] = ()
    #: For agents: the passport's id (``jti``), so an audit record names the exact credential.
    passport_id: str | None = None
    expires_at: float | None = None
    #: Limits this call also counts against, besides its own ``quota`` and its tenant's: for an
    #: agent, the root key's and every ancestor passport's, as ``(counter id, quota)``. A parent
    #: passport's budget is shared by every passport exchanged from it, so delegation cannot
    #: multiply a budget.
    inherited: tuple[tuple[str, Quota], ...] = ()

    @property
    def admin(self) -> bool:
        return self.scopes.admin

    @property
    def key_id(self) -> str:
        """The id that per-caller state (bulkheads, limits) is keyed by."""
        return self.id

    @property
    def models(self) -> frozenset[str] | None:
        return self.scopes.models

    def may_use(self, model: str) -> bool:
        return self.scopes.may_use(model)

    @property
    def counter_id(self) -> str:
        """The id this principal's own limits are counted under (a passport's own id)."""
        return self.passport_id or self.id

    def quotas(self) -> tuple[tuple[str, Quota], ...]:
        """Every ``(counter id, quota)`` a call by this principal counts against."""
        return (*self.inherited, (self.counter_id, self.quota))

    @property
    def subject(self) -> str:
        """On whose behalf the call is made: the chain's root for agents, else this principal."""
        return self.chain[0] if self.chain else self.id

    def describe(self) -> dict[str, object]:
        """The principal as recorded in audit records and shown by ``/admin/whoami``."""
        out: dict[str, object] = {"id": self.id, "kind": self.kind, "name": self.name}
        if self.tenant is not None:
            out["tenant"] = self.tenant
        if self.groups:
            out["groups"] = list(self.groups)
        if self.chain:
            out["chain"] = list(self.chain)
        if self.passport_id is not None:
            out["passport"] = self.passport_id
        out["scopes"] = self.scopes.as_list()
        return out
