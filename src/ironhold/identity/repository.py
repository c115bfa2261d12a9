"""Where keys and passports are kept: one Protocol each, and their SQL implementations (SQLite
and PostgreSQL through SQLAlchemy Core).

The services (``KeyService``, ``PassportAuthority``) decide: they validate, hash, sign, cache
and check expiry; a repository only stores and finds. Calls block (short SQL statements), as the
CLI wants; the services run them in a worker thread on the request path. One contract suite,
``tests/identity/test_repository_contract.py``, runs over every implementation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

import orjson
from sqlalchemy import Select, insert, or_, select, update

from ironhold.core.principal import Quota
from ironhold.identity.keys import ApiKey
from ironhold.identity.passports import PassportRecord
from ironhold.store.sql import SqlStore, api_keys, passports

__all__ = ["KeyRepository", "PassportRepository", "SqlKeyRepository", "SqlPassportRepository"]


class KeyRepository(Protocol):
    def add(self, key: ApiKey, digest: str) -> None:
        """Store a new key under the keyed hash of its secret."""
        ...

    def by_digest(self, digest: str) -> tuple[ApiKey, str] | None:
        """The key stored under ``digest`` (active or not) and the digest as stored."""
        ...

    def all(self, include_revoked: bool = False) -> list[ApiKey]:
        """Keys, oldest first."""
        ...

    def revoke(self, id_or_name: str, by_name: bool, now: float) -> list[ApiKey]:
        """Mark the active key with this id (or, ``by_name``, every active key with this name)
        revoked at ``now``; returns them as they now are."""
        ...


class PassportRepository(Protocol):
    def add(self, record: PassportRecord) -> None:
        ...

    def revoked(self, jti: str) -> bool:
        """Whether the passport is revoked; one the repository does not know counts as
        revoked (every real passport was stored when it was issued)."""
        ...

    def revoke_tree(self, *, jti: str | None = None, subject: str | None = None,
                    now: float) -> tuple[list[str], set[str]]:
        """Revoke the passport ``jti`` (or every passport issued for ``subject``) and every
        passport exchanged from them, at ``now``, in one transaction. Returns the ids newly
        revoked, and every id in the trees (revoked before or now)."""
        ...

    def all(self, subject: str | None = None) -> list[PassportRecord]:
        """Passports, oldest first; only ``subject``'s if given."""
        ...


class SqlKeyRepository:
    def __init__(self, store: SqlStore):
        self.store = store

    def add(self, key: ApiKey, digest: str) -> None:
        quota = key.quota
        with self.store.engine.begin() as conn:
            conn.execute(insert(api_keys).values(
                id=key.id, name=key.name, prefix=key.prefix, hash=digest,
                models=_json_list(key.models), admin=key.admin, created_at=key.created_at,
                revoked_at=key.revoked_at, tenant=key.tenant, tools=_json_list(key.tools),
                expires_at=key.expires_at, rpm=quota.rpm, tpm=quota.tpm,
                concurrency=quota.concurrency, budget_usd_daily=quota.budget_usd_daily,
                budget_usd_monthly=quota.budget_usd_monthly))

    def by_digest(self, digest: str) -> tuple[ApiKey, str] | None:
        with self.store.engine.connect() as conn:
            row = conn.execute(select(api_keys).where(api_keys.c.hash == digest)
                               ).mappings().first()
        return None if row is None else (_key(row), str(row["hash"]))

    def all(self, include_revoked: bool = False) -> list[ApiKey]:
        query = select(api_keys).order_by(api_keys.c.created_at)
        if not include_revoked:
            query = query.where(api_keys.c.revoked_at.is_(None))
        with self.store.engine.connect() as conn:
            return [_key(row) for row in conn.execute(query).mappings()]

    def revoke(self, id_or_name: str, by_name: bool, now: float) -> list[ApiKey]:
        match = (or_(api_keys.c.id == id_or_name, api_keys.c.name == id_or_name) if by_name
                 else api_keys.c.id == id_or_name)
        with self.store.engine.begin() as conn:
            rows = conn.execute(select(api_keys).where(match, api_keys.c.revoked_at.is_(None))
                                ).mappings().all()
            if rows:
                conn.execute(update(api_keys)
                             .where(api_keys.c.id.in_([r["id"] for r in rows]))
                             .values(revoked_at=now))
        return [_key({**row, "revoked_at": now}) for row in rows]


class SqlPassportRepository:
    def __init__(self, store: SqlStore):
        self.store = store

    def add(self, record: PassportRecord) -> None:
        with self.store.engine.begin() as conn:
            conn.execute(insert(passports).values(
                jti=record.jti, parent=record.parent, subject=record.subject,
                agent=record.agent, chain=orjson.dumps(list(record.chain)).decode(),
                issued_at=record.issued_at, expires_at=record.expires_at,
                revoked_at=record.revoked_at))

    def revoked(self, jti: str) -> bool:
        with self.store.engine.connect() as conn:
            row = conn.execute(select(passports.c.revoked_at)
                               .where(passports.c.jti == jti)).first()
        return row is None or row.revoked_at is not None

    def revoke_tree(self, *, jti: str | None = None, subject: str | None = None,
                    now: float) -> tuple[list[str], set[str]]:
        roots: Select[tuple[str]] = select(passports.c.jti)
        if jti is not None:
            roots = roots.where(passports.c.jti == jti)
        elif subject is not None:
            roots = roots.where(passports.c.subject == subject)
        else:
            raise ValueError("revoke_tree needs a jti or a subject")
        revoked: list[str] = []
        seen: set[str] = set()
        with self.store.engine.begin() as conn:
            frontier = [r.jti for r in conn.execute(roots)]
            while frontier:
                seen.update(frontier)
                result = conn.execute(update(passports).where(
                    passports.c.jti.in_(frontier), passports.c.revoked_at.is_(None)
                ).values(revoked_at=now).returning(passports.c.jti))
                revoked.extend(r.jti for r in result)
                children = conn.execute(select(passports.c.jti).where(
                    passports.c.parent.in_(frontier))).all()
                frontier = [c.jti for c in children if c.jti not in seen]
        return revoked, seen

    def all(self, subject: str | None = None) -> list[PassportRecord]:
        query = select(passports).order_by(passports.c.issued_at)
        if subject is not None:
            query = query.where(passports.c.subject == subject)
        with self.store.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [PassportRecord(
            jti=r["jti"], parent=r["parent"], subject=r["subject"], agent=r["agent"],
            chain=tuple(orjson.loads(r["chain"])), issued_at=float(r["issued_at"]),
            expires_at=float(r["expires_at"]),
            revoked_at=None if r["revoked_at"] is None else float(r["revoked_at"]))
            for r in rows]


def _json_list(names: Iterable[str] | None) -> str | None:
    return None if names is None else orjson.dumps(list(names)).decode()


def _key(r: Mapping[Any, Any]) -> ApiKey:
    models = orjson.loads(r["models"]) if r["models"] is not None else None
    tools = orjson.loads(r["tools"]) if r["tools"] is not None else None
    return ApiKey(
        id=r["id"], name=r["name"], prefix=r["prefix"],
        models=tuple(models) if models is not None else None,
        admin=bool(r["admin"]), created_at=float(r["created_at"]),
        revoked_at=float(r["revoked_at"]) if r["revoked_at"] is not None else None,
        tenant=r["tenant"], tools=tuple(tools) if tools is not None else None,
        expires_at=float(r["expires_at"]) if r["expires_at"] is not None else None,
        quota=Quota(rpm=r["rpm"], tpm=r["tpm"], concurrency=r["concurrency"],
                    budget_usd_daily=r["budget_usd_daily"],
                    budget_usd_monthly=r["budget_usd_monthly"]))
