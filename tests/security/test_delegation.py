"""Finding 7 and its neighbours: a delegated identity never creates a credential broader or
longer-lived than itself; admin comes only from what names Ironhold; an agent chooses its own
name, so nothing keyed by a name may follow it; a slow identity provider holds up no request."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import CHAT, assert_openai_error, metric, post, wait_until
from tests.idp import IdentityProvider
from tests.servers import GatewayServer, SimulatorServer

EXCHANGE = {"grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "actor_token_type": "urn:ironhold:params:oauth:token-type:agent"}


def _passport(gw: GatewayServer, subject: str, agent: str, **extra: str) -> str:
    answer = httpx.post(gw.base_url + "/oauth/token",
                        data={**EXCHANGE, "subject_token": subject, "actor_token": agent, **extra})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


def test_an_admin_passport_cannot_mint_keys_that_outlive_it(
        chat_gateway: Callable[..., GatewayServer]) -> None:
    """Was: a passport exchanged from an admin key with no scope inherited admin, created a
    non-expiring admin key, and that key kept working after the passport was revoked."""
    gw = chat_gateway()
    admin = gw.create_key("ops", admin=True)
    implicit = _passport(gw, admin, "helper")
    who = httpx.get(gw.base_url + "/admin/whoami",
                    headers={"Authorization": f"Bearer {implicit}"}).json()
    assert "admin" not in who["scopes"]
    denied = httpx.post(gw.base_url + "/admin/keys", json={"name": "x", "admin": True},
                        headers={"Authorization": f"Bearer {implicit}"})
    assert_openai_error(denied, 403)
    # Even a passport given admin by name administers, but mints no credential.
    explicit = _passport(gw, admin, "operator", scope="admin")
    auth = {"Authorization": f"Bearer {explicit}"}
    assert httpx.get(gw.base_url + "/admin/keys", headers=auth).status_code == 200
    minted = httpx.post(gw.base_url + "/admin/keys", json={"name": "x", "admin": True},
                        headers=auth)
    assert assert_openai_error(minted, 403)["code"] == "delegated_credential"
    assert [k.name for k in gw.gateway.keys.list_keys()] == ["ops"]


def test_revoking_by_http_takes_an_id_not_a_name(
        chat_gateway: Callable[..., GatewayServer]) -> None:
    """Was: DELETE /admin/keys/{name} revoked every key with that name."""
    gw = chat_gateway()
    auth = {"Authorization": f"Bearer {gw.create_key('ops', admin=True)}"}
    first, second = gw.create_key("shared"), gw.create_key("shared")
    assert_openai_error(httpx.delete(gw.base_url + "/admin/keys/shared", headers=auth), 404)
    assert post(gw, first, CHAT).status_code == 200
    key_id = gw.gateway.keys.find(first).id  # type: ignore[union-attr]
    assert httpx.delete(gw.base_url + f"/admin/keys/{key_id}", headers=auth).status_code == 200
    gw.gateway.keys._cache.clear()  # the revocation delay (auth.cache_ttl) is not under test
    assert post(gw, first, CHAT).status_code == 401
    assert post(gw, second, CHAT).status_code == 200


@pytest.fixture
def idp() -> Iterator[IdentityProvider]:
    provider = IdentityProvider()
    yield provider
    provider.close()


def test_an_identity_providers_bare_admin_scope_is_not_gateway_admin(
        chat_gateway: Callable[..., GatewayServer], idp: IdentityProvider,
        tmp_path: Path) -> None:
    idp.write_jwks(tmp_path / "jwks.json")
    gw = chat_gateway(identity={"jwt": {"issuer": idp.issuer, "audience": "ironhold",
                                        "jwks": {"file": "jwks.json"}}})
    for scope, status in (("openid admin", 403), ("openid ironhold:admin", 200)):
        answer = httpx.get(gw.base_url + "/admin/keys",
                           headers={"Authorization": f"Bearer {idp.token(scope=scope)}"})
        assert answer.status_code == status, (scope, answer.text)


def test_a_failing_jwks_url_holds_up_no_request(
        chat_gateway: Callable[..., GatewayServer], idp: IdentityProvider) -> None:
    """Was (from reading): every OIDC request waited behind the refresh of stale keys. Now
    the keys held verify while a refresh runs beside them."""
    url = idp.serve()
    gw = chat_gateway(identity={"jwt": {"issuer": idp.issuer, "audience": "ironhold",
                                        "jwks": {"url": url, "cache_ttl": "1s",
                                                 "min_refresh": "1s"}}})
    token = idp.token()
    assert post(gw, token, CHAT).status_code == 200
    idp.delay = 4.0  # the provider hangs from now on (for far longer than a request takes)
    time.sleep(1.2)   # the keys held are stale
    for _ in range(3):
        assert post(gw, token, CHAT).status_code == 200
    # Answered while the one refresh they started is still held up at the provider.
    assert wait_until(lambda: idp.pending == 1, 3), "no refresh reached the provider"
    assert idp.fetches == 2


def test_chaos_keys_never_follow_an_agent_that_takes_the_name(
        make_gateway: Callable[..., GatewayServer], simulator: SimulatorServer) -> None:
    """chaos.keys matched a principal's name, which an agent's minter picks."""
    gw = make_gateway([{"name": "chat", "deployments": [{"url": simulator.url}]}],
                      chaos={"keys": {"loadtest": [{"kind": "abort", "status": 503}]}})
    key = gw.create_key("svc")
    agent = _passport(gw, key, "loadtest")
    assert post(gw, agent, CHAT).status_code == 200
    assert metric(gw, "ironhold_injected_faults_total") == 0
    chaos_key = gw.create_key("loadtest")
    assert post(gw, chaos_key, CHAT).status_code in (502, 503)
    assert metric(gw, "ironhold_injected_faults_total") >= 1
