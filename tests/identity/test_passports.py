"""Agent passports: issue, verify, narrow along a chain, bound the depth, revoke in cascade."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ironhold.config.security import PassportConfig
from ironhold.core.errors import AuthenticationError, InvalidRequestError
from ironhold.core.keyfiles import load_or_create_ed25519
from ironhold.core.principal import Quota, Scopes
from ironhold.identity.keys import KeyService
from ironhold.identity.passports import PassportAuthority
from ironhold.identity.repository import SqlKeyRepository, SqlPassportRepository
from ironhold.identity.stage import Authenticator
from ironhold.identity.tokens import peek
from ironhold.store.sql import open_sql_store
from tests.idp import tamper


@pytest.fixture
def auth(tmp_path: Path) -> Iterator[Authenticator]:
    store = open_sql_store(f"sqlite:///{tmp_path / 'ih.db'}", tmp_path)
    keys = KeyService(SqlKeyRepository(store), b"a-test-secret-of-enough-length", cache_ttl=60)
    key = load_or_create_ed25519(tmp_path / "passport.pem", "test")
    passports = PassportAuthority(PassportConfig(max_depth=2), key,
                                  SqlPassportRepository(store), cache_ttl=60)
    yield Authenticator(keys, passports, None)
    store.close()


def passports_of(auth: Authenticator) -> PassportAuthority:
    assert auth.passports is not None
    return auth.passports


async def test_a_passport_carries_the_chain_and_narrowed_scopes(auth: Authenticator) -> None:
    key, secret = auth.keys.create("svc", models=["chat", "embed"], tenant="acme",
                                   quota=Quota(rpm=100, budget_usd_daily=5.0))
    user = await auth.from_token(secret)
    issued = passports_of(auth).issue(user, "planner", scopes=Scopes(models=frozenset({"chat"})),
                                      quota=Quota(budget_usd_daily=1.0))
    header, claims = peek(issued.token)
    assert header["alg"] == "Ed25519" and header["kid"]
    assert claims["sub"] == key.id and claims["act"] == {"sub": "agent:planner"}
    agent = await auth.from_token(issued.token)
    assert (agent.kind, agent.id, agent.name, agent.tenant) == (
        "agent", "agent:planner", "planner", "acme")
    assert agent.chain == (key.id, "agent:planner") and agent.subject == key.id
    assert agent.may_use("chat") and not agent.may_use("embed")
    # The passport's own cap, and the key's limits it still counts against.
    assert agent.quotas() == ((key.id, Quota(rpm=100, budget_usd_daily=5.0)),
                              (issued.jti, Quota(budget_usd_daily=1.0)))

    # Re-delegation: the chain grows; the RFC 8693 act claim nests the earlier actor.
    coder = passports_of(auth).issue(agent, "coder")
    _, claims = peek(coder.token)
    assert claims["act"] == {"sub": "agent:coder", "act": {"sub": "agent:planner"}}
    nested = await auth.from_token(coder.token)
    assert nested.chain == (key.id, "agent:planner", "agent:coder")
    assert nested.scopes == agent.scopes and nested.quota == Quota(budget_usd_daily=1.0)
    assert [cid for cid, _ in nested.quotas()] == [key.id, issued.jti, coder.jti]


async def test_scopes_and_caps_can_only_narrow(auth: Authenticator) -> None:
    _, secret = auth.keys.create("svc", models=["chat"], tools=["search"])
    user = await auth.from_token(secret)
    authority = passports_of(auth)
    for wider in (Scopes(models=frozenset({"chat", "embed"})), Scopes(),
                  Scopes(models=frozenset({"chat"}), tools=frozenset({"shell"})),
                  Scopes(models=frozenset({"chat"}), admin=True)):
        with pytest.raises(InvalidRequestError) as err:
            authority.issue(user, "a", scopes=wider)
        assert err.value.code == "invalid_scope"
    agent = await auth.from_token(authority.issue(user, "a", quota=Quota(rpm=10)).token)
    with pytest.raises(InvalidRequestError):
        authority.issue(agent, "b", quota=Quota(rpm=11))
    assert authority.issue(agent, "b", quota=Quota(rpm=5)).principal.quota == Quota(rpm=5)


async def test_delegation_depth_and_loops_are_bounded(auth: Authenticator) -> None:
    _, secret = auth.keys.create("svc")
    authority = passports_of(auth)
    one = await auth.from_token(authority.issue(await auth.from_token(secret), "a").token)
    two = await auth.from_token(authority.issue(one, "b").token)
    with pytest.raises(InvalidRequestError) as err:
        authority.issue(two, "c")  # max_depth is 2 in this fixture
    assert err.value.code == "delegation_too_deep"
    with pytest.raises(InvalidRequestError) as err:
        authority.issue(one, "a")
    assert err.value.code == "delegation_loop"
    with pytest.raises(InvalidRequestError):
        authority.issue(one, "no spaces allowed")


async def test_revocation_cascades_to_derived_passports(auth: Authenticator) -> None:
    key, secret = auth.keys.create("svc")
    authority = passports_of(auth)
    first = authority.issue(await auth.from_token(secret), "a")
    child = authority.issue(await auth.from_token(first.token), "b")
    sibling = authority.issue(await auth.from_token(secret), "c")
    assert await auth.from_token(child.token)  # cached as valid for 60 s
    assert set(authority.revoke(first.jti)) == {first.jti, child.jti}
    for token in (first.token, child.token):
        with pytest.raises(AuthenticationError) as err:
            await auth.from_token(token)
        assert err.value.code == "revoked_token"
    assert await auth.from_token(sibling.token)
    # Revoking the key takes every passport issued for it with it.
    auth.revoke_key(key.id)
    with pytest.raises(AuthenticationError):
        await auth.from_token(sibling.token)
    statuses = {p.jti: p.status() for p in authority.list_passports()}
    assert set(statuses.values()) == {"revoked"} and len(statuses) == 3


async def test_a_passport_never_outlives_its_subject(auth: Authenticator) -> None:
    _, secret = auth.keys.create("svc", expires_in=30)
    issued = passports_of(auth).issue(await auth.from_token(secret), "a", ttl=3600)
    assert issued.expires_in <= 30
    assert 0 < issued.principal.expires_at - time.time() <= 30  # type: ignore[operator]


async def test_forged_and_foreign_passports_are_refused(auth: Authenticator,
                                                        tmp_path: Path) -> None:
    _, secret = auth.keys.create("svc")
    issued = passports_of(auth).issue(await auth.from_token(secret), "a")
    with pytest.raises(AuthenticationError):
        await auth.from_token(tamper(issued.token))
    # Same issuer name, another key: a different gateway's passport is not ours.
    other_key = load_or_create_ed25519(tmp_path / "other.pem", "test")
    other = PassportAuthority(PassportConfig(), other_key, passports_of(auth).repository)
    foreign = other.issue(await auth.from_token(secret), "a")
    with pytest.raises(AuthenticationError):
        await auth.from_token(foreign.token)
    with pytest.raises(AuthenticationError) as err:
        await auth.from_token("a.b.c")
    assert err.value.code == "invalid_token"
