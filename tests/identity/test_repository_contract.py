"""One contract for the identity repositories, over every implementation: SQL on SQLite and on
PostgreSQL. A new repository passes this suite before a service may use it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ironhold.core.principal import Quota
from ironhold.identity.keys import ApiKey
from ironhold.identity.passports import PassportRecord
from ironhold.identity.repository import (
    KeyRepository,
    PassportRepository,
    SqlKeyRepository,
    SqlPassportRepository,
)
from ironhold.store.sql import SqlStore, open_sql_store

T0 = 1_795_000_000.0


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStore]:
    url = (f"sqlite:///{tmp_path / 'identity.db'}" if request.param == "sqlite"
           else request.getfixturevalue("postgres_url"))
    made = open_sql_store(url, tmp_path)
    yield made
    made.close()


@pytest.fixture
def keys(store: SqlStore) -> KeyRepository:
    return SqlKeyRepository(store)


@pytest.fixture
def passports(store: SqlStore) -> PassportRepository:
    return SqlPassportRepository(store)


def a_key(id_: str, name: str, created_at: float = T0) -> ApiKey:
    return ApiKey(id=id_, name=name, prefix="ih-" + id_[-7:], models=None, admin=False,
                  created_at=created_at, revoked_at=None)


def a_passport(jti: str, parent: str | None = None, subject: str = "key_a",
               issued_at: float = T0, expires_at: float = T0 + 600) -> PassportRecord:
    return PassportRecord(jti=jti, parent=parent, subject=subject, agent=f"agent:{jti}",
                          chain=(subject, f"agent:{jti}"), issued_at=issued_at,
                          expires_at=expires_at)


# -- keys -------------------------------------------------------------------------------------


def test_a_key_comes_back_whole_by_its_digest(keys: KeyRepository) -> None:
    key = ApiKey(id="key_0000000000000001", name="svc", prefix="ih-abcdefg",
                 models=("chat", "embed"), admin=True, created_at=T0, revoked_at=None,
                 tenant="acme", tools=("search",), expires_at=T0 + 3600,
                 quota=Quota(rpm=10, tpm=1000, concurrency=2, budget_usd_daily=1.5,
                             budget_usd_monthly=20.0))
    keys.add(key, "d" * 64)
    found = keys.by_digest("d" * 64)
    assert found == (key, "d" * 64)
    assert keys.by_digest("e" * 64) is None


def test_a_digest_belongs_to_one_key(keys: KeyRepository) -> None:
    keys.add(a_key("key_0000000000000001", "a"), "d" * 64)
    with pytest.raises(Exception):  # noqa: B017 - each engine raises its own IntegrityError
        keys.add(a_key("key_0000000000000002", "b"), "d" * 64)
    assert [k.id for k in keys.all()] == ["key_0000000000000001"]


def test_keys_are_listed_oldest_first_and_revoked_ones_on_request(keys: KeyRepository) -> None:
    for n, name in enumerate(["a", "b", "c"]):
        keys.add(a_key(f"key_000000000000000{n}", name, created_at=T0 + n), str(n) * 64)
    assert [k.name for k in keys.all()] == ["a", "b", "c"]
    revoked = keys.revoke("key_0000000000000001", by_name=False, now=T0 + 10)
    assert [(k.id, k.revoked_at) for k in revoked] == [("key_0000000000000001", T0 + 10)]
    assert [k.name for k in keys.all()] == ["a", "c"]
    assert [k.name for k in keys.all(include_revoked=True)] == ["a", "b", "c"]
    stored = keys.by_digest("1" * 64)
    assert stored is not None and stored[0].revoked_at == T0 + 10 and not stored[0].active


def test_revoking_by_name_takes_every_active_key_of_that_name(keys: KeyRepository) -> None:
    keys.add(a_key("key_0000000000000001", "team"), "1" * 64)
    keys.add(a_key("key_0000000000000002", "team"), "2" * 64)
    keys.add(a_key("key_0000000000000003", "other"), "3" * 64)
    assert keys.revoke("team", by_name=False, now=T0) == []  # not an id
    revoked = keys.revoke("team", by_name=True, now=T0 + 1)
    assert {k.id for k in revoked} == {"key_0000000000000001", "key_0000000000000002"}
    # Already revoked: nothing more to revoke, and the first time stands.
    assert keys.revoke("team", by_name=True, now=T0 + 2) == []
    stored = keys.by_digest("1" * 64)
    assert stored is not None and stored[0].revoked_at == T0 + 1
    assert [k.name for k in keys.all()] == ["other"]


# -- passports --------------------------------------------------------------------------------


def test_a_passport_comes_back_whole(passports: PassportRepository) -> None:
    record = a_passport("p1")
    passports.add(record)
    assert passports.all() == [record]
    assert not passports.revoked("p1")
    assert record.status(now=T0 + 1) == "active" and record.status(now=T0 + 601) == "expired"


def test_an_unknown_passport_counts_as_revoked(passports: PassportRepository) -> None:
    assert passports.revoked("never-issued")


def test_revoking_a_passport_revokes_what_was_exchanged_from_it(
        passports: PassportRepository) -> None:
    # p1 -> p2 -> p3, and p1 -> p4; p5 is another tree.
    for jti, parent in [("p1", None), ("p2", "p1"), ("p3", "p2"), ("p4", "p1"), ("p5", None)]:
        passports.add(a_passport(jti, parent))
    revoked, trees = passports.revoke_tree(jti="p2", now=T0 + 5)
    assert sorted(revoked) == ["p2", "p3"] and trees == {"p2", "p3"}
    assert [passports.revoked(j) for j in ["p1", "p2", "p3", "p4", "p5"]] == [
        False, True, True, False, False]
    revoked, trees = passports.revoke_tree(jti="p1", now=T0 + 6)
    # p2 and p3 were revoked already: only p1 and p4 are new, and the trees name all four.
    assert sorted(revoked) == ["p1", "p4"] and trees == {"p1", "p2", "p3", "p4"}
    statuses = {p.jti: (p.status(now=T0 + 7), p.revoked_at) for p in passports.all()}
    assert statuses == {"p1": ("revoked", T0 + 6), "p2": ("revoked", T0 + 5),
                        "p3": ("revoked", T0 + 5), "p4": ("revoked", T0 + 6),
                        "p5": ("active", None)}


def test_revoking_a_subject_revokes_every_passport_issued_for_it(
        passports: PassportRepository) -> None:
    passports.add(a_passport("p1", subject="key_a"))
    passports.add(a_passport("p2", "p1", subject="key_a"))
    passports.add(a_passport("p3", subject="key_b"))
    revoked, _ = passports.revoke_tree(subject="key_a", now=T0)
    assert sorted(revoked) == ["p1", "p2"]
    assert not passports.revoked("p3")
    assert passports.revoke_tree(subject="key_nobody", now=T0) == ([], set())


def test_passports_are_listed_oldest_first_and_by_subject(passports: PassportRepository) -> None:
    passports.add(a_passport("late", subject="key_a", issued_at=T0 + 2))
    passports.add(a_passport("early", subject="key_a", issued_at=T0))
    passports.add(a_passport("other", subject="key_b", issued_at=T0 + 1))
    assert [p.jti for p in passports.all()] == ["early", "other", "late"]
    assert [p.jti for p in passports.all("key_a")] == ["early", "late"]
    assert passports.all("key_nobody") == []
