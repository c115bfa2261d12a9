"""The key service over every engine (SQLite and PostgreSQL): create, verify, revoke, and the
schema and its migrations. The repository's own contract is ``test_repository_contract``."""

from __future__ import annotations

import asyncio
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, text

from ironhold.core.errors import AuthenticationError, ConfigError, InvalidRequestError
from ironhold.core.principal import Quota
from ironhold.identity.keys import KeyService, load_key_secret
from ironhold.identity.repository import SqlKeyRepository
from ironhold.store.sql import SqlStore, api_keys, open_sql_store


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'keys.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    made = open_sql_store(url, tmp_path)
    yield made
    made.close()


@pytest.fixture
def keys(store: SqlStore) -> KeyService:
    return KeyService(SqlKeyRepository(store), b"a-test-secret-of-enough-length", cache_ttl=60)


async def test_create_then_verify(keys: KeyService) -> None:
    key, secret = keys.create("alice", models=["chat", "embed"], admin=False)
    assert secret.startswith("ih-") and len(secret) > 40
    verified = await keys.verify(secret)
    assert verified.id == key.id and verified.models == ("chat", "embed")
    principal = verified.principal()
    assert principal.may_use("chat") and not principal.may_use("other")
    # Made once per key; the key's own equality and repr do not see it.
    assert verified.principal() is principal and verified == key and "_principal" not in repr(key)
    _, admin_secret = keys.create("ops", admin=True)
    assert (await keys.verify(admin_secret)).principal().admin
    assert (await keys.verify(admin_secret)).principal().may_use("anything")


async def test_only_a_keyed_hash_is_stored(keys: KeyService, store: SqlStore) -> None:
    _, secret = keys.create("bob")
    with store.engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(select(api_keys)).mappings()]
    assert len(rows) == 1
    assert all(secret not in str(value) for value in rows[0].values())
    assert rows[0]["prefix"] == secret[:10]
    # A service with another secret cannot verify it: the hash is keyed.
    other = KeyService(SqlKeyRepository(store), b"another-secret-entirely-1234",
                       cache_ttl=0.001)
    with pytest.raises(AuthenticationError):
        await other.verify(secret)


async def test_wrong_and_malformed_keys_are_refused(keys: KeyService) -> None:
    _, secret = keys.create("carol")
    for bad in [secret[:-1] + ("A" if secret[-1] != "A" else "B"), "ih-", "sk-foo",
                "", "ih-" + "x" * 500]:
        with pytest.raises(AuthenticationError):
            await keys.verify(bad)


async def test_revoke_by_id_or_name_and_listing(keys: KeyService) -> None:
    a, a_secret = keys.create("team")
    b, b_secret = keys.create("team")
    c, _ = keys.create("solo")
    await keys.verify(a_secret)  # cached now
    assert [k.id for k in keys.revoke(a.id)] == [a.id]
    with pytest.raises(AuthenticationError):
        await keys.verify(a_secret)  # revocation clears this process's cache
    assert await keys.verify(b_secret)
    assert [k.id for k in keys.revoke("team")] == [b.id]
    assert keys.revoke("team") == []
    assert [k.id for k in keys.list_keys()] == [c.id]
    assert {k.id for k in keys.list_keys(include_revoked=True)} == {a.id, b.id, c.id}
    assert keys.find(a_secret) is not None and not keys.find(a_secret).active  # type: ignore[union-attr]


async def test_tenant_scopes_limits_and_expiry_round_trip(keys: KeyService) -> None:
    quota = Quota(rpm=60, tpm=10_000, concurrency=4, budget_usd_daily=1.5,
                  budget_usd_monthly=20.0)
    key, secret = keys.create("svc", models=["chat"], tenant="acme", tools=["search", " "],
                              expires_in=3600, quota=quota)
    verified = await keys.verify(secret)
    assert verified == key
    principal = verified.principal()
    assert (principal.id, principal.kind, principal.tenant) == (key.id, "key", "acme")
    assert principal.quota == quota and principal.scopes.tools == frozenset({"search"})
    assert principal.scopes.may_call("search") and not principal.scopes.may_call("shell")
    assert key.expires_at is not None and 3590 < key.expires_at - time.time() <= 3600
    listed = keys.list_keys()[0].as_dict()
    assert listed["tenant"] == "acme" and listed["status"] == "active"
    assert listed["limits"] == {"rpm": 60, "tpm": 10_000, "concurrency": 4,
                                "budget_usd_daily": 1.5, "budget_usd_monthly": 20.0}


async def test_an_expired_key_is_refused_even_from_the_cache(keys: KeyService) -> None:
    _, secret = keys.create("short-lived", expires_in=0.3)
    assert await keys.verify(secret)  # cached for 60 s by this fixture
    await asyncio.sleep(0.35)
    with pytest.raises(AuthenticationError) as err:
        await keys.verify(secret)
    assert err.value.code == "expired_api_key"
    assert keys.list_keys()[0].status == "expired"


def test_limits_and_expiry_are_checked(keys: KeyService) -> None:
    for bad in (Quota(rpm=0), Quota(budget_usd_daily=-1.0), Quota(concurrency=-2)):
        with pytest.raises(InvalidRequestError):
            keys.create("x", quota=bad)
    with pytest.raises(InvalidRequestError):
        keys.create("x", expires_in=0)
    with pytest.raises(InvalidRequestError):
        keys.create("x", tenant="  ")


def test_keys_made_before_tenants_and_limits_survive_the_upgrade(tmp_path: Path) -> None:
    """A database at revision 0001 (issue 2's schema) upgrades in place; its keys still work."""
    from alembic import command
    from alembic.config import Config as AlembicConfig
    from sqlalchemy import create_engine

    from ironhold.store.sql import MIGRATIONS

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0001")
        conn.execute(text(
            "INSERT INTO ironhold_api_keys (id, name, prefix, hash, models, admin, created_at)"
            " VALUES ('key_old', 'old', 'ih-abcdefg', 'h', NULL, 0, 1.0)"))
    engine.dispose()
    store = open_sql_store(url, tmp_path)
    try:
        old = KeyService(SqlKeyRepository(store),
                         b"a-test-secret-of-enough-length").list_keys()[0]
        assert (old.id, old.tenant, old.tools, old.expires_at, old.quota) == (
            "key_old", None, None, None, Quota())
    finally:
        store.close()


def test_key_names_are_checked(keys: KeyService) -> None:
    with pytest.raises(InvalidRequestError):
        keys.create("   ")
    assert keys.create("x", models=[" chat ", "chat", ""])[0].models == ("chat",)


def test_generated_secret_is_private_and_stable(tmp_path: Path) -> None:
    first = load_key_secret(None, tmp_path / "state")
    mode = stat.S_IMODE(os.stat(tmp_path / "state" / "key-secret").st_mode)
    assert mode == 0o600
    assert load_key_secret(None, tmp_path / "state") == first
    assert load_key_secret("configured-secret-value", tmp_path) == b"configured-secret-value"
    with pytest.raises(ConfigError):
        load_key_secret("short", tmp_path)


def test_unreachable_database_is_a_clear_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        open_sql_store("postgresql://nobody:pw@127.0.0.1:1/none", tmp_path)
    assert "cannot open the postgresql database" in err.value.message
    assert "pw" not in err.value.message


def test_the_schema_matches_the_migrations(store: SqlStore) -> None:
    """The tables the code declares are exactly what the migrations build."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from ironhold.store.sql import metadata, migrate

    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
        version = conn.execute(select(text("version_num")).select_from(
            text("alembic_version"))).scalar_one()
    assert diff == []
    from alembic.script import ScriptDirectory

    from ironhold.store.sql import MIGRATIONS
    assert version == ScriptDirectory(str(MIGRATIONS)).get_current_head()
    migrate(store.engine)  # a second upgrade is a no-op
