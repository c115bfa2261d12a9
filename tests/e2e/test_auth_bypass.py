"""The auth-bypass suite: every way in without the right credential is refused, with the right
status and an OpenAI error body. And the right credentials work through the official SDK."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from tests.helpers import CHAT, assert_openai_error, post, wait_http
from tests.idp import IdentityProvider, tamper
from tests.servers import GatewayServer, SimulatorServer, free_port

EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
AGENT = "urn:ironhold:params:oauth:token-type:agent"


@pytest.fixture
def idp() -> Iterator[IdentityProvider]:
    provider = IdentityProvider()
    yield provider
    provider.close()


@pytest.fixture
def secured(make_gateway: Callable[..., GatewayServer], simulator: SimulatorServer,
            idp: IdentityProvider, tmp_path: Path) -> GatewayServer:
    idp.write_jwks(tmp_path / "jwks.json")
    return make_gateway(
        [{"name": "chat", "deployments": [{"url": simulator.url}]},
         {"name": "embed", "deployments": [{"url": simulator.url}]}],
        identity={"jwt": {"issuer": idp.issuer, "audience": "ironhold",
                          "jwks": {"file": "jwks.json"}, "admin_groups": ["ops"]},
                  "passports": {"max_depth": 2}},
    )


def exchange(gw: GatewayServer, subject: str, agent: str, **extra: str) -> httpx.Response:
    form = {"grant_type": EXCHANGE, "subject_token": subject, "actor_token": agent,
            "actor_token_type": AGENT, **extra}
    return httpx.post(gw.base_url + "/oauth/token", data=form, timeout=10)


def test_the_right_credentials_work_through_the_sdk(secured: GatewayServer,
                                                    idp: IdentityProvider) -> None:
    key = secured.create_key("svc")
    passport = exchange(secured, key, "planner", scope="models:chat")
    assert passport.status_code == 200, passport.text
    body = passport.json()
    assert body["issued_token_type"] == "urn:ietf:params:oauth:token-type:jwt"
    assert body["token_type"] == "Bearer" and 0 < body["expires_in"] <= 300
    assert body["scope"] == "models:chat" and body["chain"][1] == "agent:planner"
    for credential in (key, idp.token(), body["access_token"]):
        with openai.OpenAI(base_url=secured.v1, api_key=credential, max_retries=0) as client:
            reply = client.chat.completions.create(**CHAT)  # type: ignore[call-overload]
            assert reply.choices[0].message.content
    who = httpx.get(secured.base_url + "/admin/whoami",
                    headers={"Authorization": f"Bearer {body['access_token']}"}).json()
    assert who["kind"] == "agent" and who["chain"] == body["chain"]
    jwks = httpx.get(secured.base_url + "/.well-known/jwks.json").json()
    assert jwks["keys"][0]["kty"] == "OKP" and "d" not in jwks["keys"][0]


def test_missing_and_malformed_credentials(secured: GatewayServer) -> None:
    assert assert_openai_error(post(secured, None, CHAT), 401)["code"] == "missing_api_key"
    for header in ("Basic dXNlcjpwdw==", "Bearer", "Bearer   x", "bearer", "Token ih-x",
                   "Bearer not-a-key", "Bearer a.b", "Bearer a.b.c", "Bearer ....",
                   "Bearer " + "x" * 20_000, "Bearer eyJhbGciOiJub25lIn0.e30.e30"):
        assert_openai_error(post(secured, None, CHAT, headers={"Authorization": header}), 401)


def test_revoked_and_expired_keys(secured: GatewayServer) -> None:
    revoked = secured.create_key("gone")
    secured.gateway.authenticator.revoke_key("gone")
    assert_openai_error(post(secured, revoked, CHAT), 401)
    expired = secured.gateway.keys.create("short", expires_in=0.2)[1]
    time.sleep(0.3)
    assert assert_openai_error(post(secured, expired, CHAT), 401)["code"] == "expired_api_key"


def test_hostile_oidc_tokens(secured: GatewayServer, idp: IdentityProvider) -> None:
    hostile = {
        "wrong audience": idp.token(aud="another-service"),
        "wrong issuer": idp.token(iss="https://evil.test"),
        "expired": idp.token(exp=int(time.time()) - 3600),
        "not yet valid": idp.token(nbf=int(time.time()) + 3600),
        "tampered": tamper(idp.token()),
        "alg none": idp.unsigned(),
        "HS256 keyed with the public key": idp.hs256_with_public_key(),
        "stranger's key": IdentityProvider(idp.issuer).token(),
    }
    for why, token in hostile.items():
        error = assert_openai_error(post(secured, token, CHAT), 401)
        assert token not in str(error), why  # the token is never echoed


def test_passport_escalation_and_depth(secured: GatewayServer, idp: IdentityProvider) -> None:
    narrow = secured.create_key("narrow", models=["chat"])
    for scope in ("models:chat,embed", "models:embed", "admin"):
        response = exchange(secured, narrow, "a", scope=scope)
        assert response.status_code in (400, 403), scope
        assert assert_openai_error(response, response.status_code)["code"] == "invalid_scope"
    passport = exchange(secured, narrow, "a").json()["access_token"]
    # Used beyond its scope: the model is refused.
    assert_openai_error(post(secured, passport, {**CHAT, "model": "embed"}), 403)
    # Re-delegation may not widen what the passport holds.
    assert exchange(secured, passport, "b", rpm="10").status_code == 200
    capped = exchange(secured, narrow, "c", rpm="10").json()["access_token"]
    assert_openai_error(exchange(secured, capped, "d", rpm="11"), 400)
    # Deeper than identity.passports.max_depth (2).
    second = exchange(secured, passport, "b").json()["access_token"]
    error = assert_openai_error(exchange(secured, second, "c"), 400)
    assert error["code"] == "delegation_too_deep"
    # A revoked passport, and one whose subject was revoked.
    admin = secured.create_key("ops", admin=True)
    passport_id = exchange(secured, narrow, "e").json()
    revoked = httpx.delete(secured.base_url + f"/admin/passports/{passport_id['passport_id']}",
                           headers={"Authorization": f"Bearer {admin}"})
    assert revoked.status_code == 200
    assert_openai_error(post(secured, passport_id["access_token"], CHAT), 401)
    secured.gateway.authenticator.revoke_key("narrow")
    assert_openai_error(post(secured, passport, CHAT), 401)
    # A token exchange that is not one.
    assert_openai_error(httpx.post(secured.base_url + "/oauth/token", data={
        "grant_type": "client_credentials"}), 400)
    assert_openai_error(exchange(secured, "ih-bogus", "a"), 401)
    assert_openai_error(exchange(secured, idp.token(aud="x"), "a"), 401)
    assert_openai_error(httpx.post(secured.base_url + "/oauth/token", content=b"\xff\xfe",
                                   headers={"Content-Type": "text/plain"}), 400)


def test_admin_routes_need_an_admin_identity(secured: GatewayServer,
                                             idp: IdentityProvider) -> None:
    key = secured.create_key("user")
    admin = secured.create_key("ops", admin=True)
    passport = exchange(secured, key, "bot").json()["access_token"]
    for credential in (key, idp.token(), passport):
        for method, path in (("GET", "/admin/keys"), ("POST", "/admin/keys"),
                             ("GET", "/admin/passports"), ("DELETE", "/admin/keys/x")):
            response = httpx.request(method, secured.base_url + path, json={"name": "x"},
                                     headers={"Authorization": f"Bearer {credential}"})
            assert_openai_error(response, 403)
    for credential in (admin, idp.token(groups=["ops"])):
        response = httpx.get(secured.base_url + "/admin/keys",
                             headers={"Authorization": f"Bearer {credential}"})
        assert response.status_code == 200, response.text
    # An admin may pass the admin scope to an agent, and only then is the agent an admin.
    admin_agent = exchange(secured, admin, "ops-bot", scope="admin").json()["access_token"]
    assert httpx.get(secured.base_url + "/admin/keys",
                     headers={"Authorization": f"Bearer {admin_agent}"}).status_code == 200
    plain_agent = exchange(secured, admin, "ops-bot-2", scope="models:chat").json()
    assert_openai_error(httpx.get(secured.base_url + "/admin/keys", headers={
        "Authorization": f"Bearer {plain_agent['access_token']}"}), 403)


def test_no_secret_is_ever_logged(tmp_path: Path, simulator: SimulatorServer,
                                  idp: IdentityProvider) -> None:
    """A real `ironhold serve` at debug level, every kind of credential used and misused: no
    key, token or upstream key appears anywhere in its output."""
    idp.write_jwks(tmp_path / "jwks.json")
    upstream_key = "sk-upstream-" + os.urandom(12).hex()
    config = tmp_path / "gateway.yaml"
    config.write_text(yaml.safe_dump({
        "state": {"url": f"sqlite:///{tmp_path / 'ih.db'}"},
        "logging": {"level": "debug", "access": True},
        "identity": {"jwt": {"issuer": idp.issuer, "audience": "ironhold",
                             "jwks": {"file": "jwks.json"}}},
        "models": [{"name": "chat", "deployments": [
            {"url": simulator.url, "api_key": upstream_key}]},
                   {"name": "down", "deployments": [
            {"url": "http://127.0.0.1:1/v1", "api_key": upstream_key}]}],
    }))
    ironhold = [sys.executable, "-m", "ironhold"]
    created = subprocess.run([*ironhold, "keys", "create", "-c", str(config), "--name", "k",
                              "--json"], capture_output=True, text=True, check=True)
    key = json.loads(created.stdout)["key"]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_file = tmp_path / "serve.log"
    with log_file.open("w") as sink:
        process = subprocess.Popen([*ironhold, "serve", "-c", str(config), "--port", str(port)],
                                   stdout=sink, stderr=subprocess.STDOUT)
        try:
            wait_http(base + "/healthz")
            token = idp.token()
            passport = httpx.post(base + "/oauth/token", data={
                "grant_type": EXCHANGE, "subject_token": key, "actor_token": "a",
                "actor_token_type": AGENT}).json()["access_token"]
            secrets = [key, token, passport, upstream_key, key[:-3] + "xyz", tamper(token),
                       idp.unsigned(), passport[:-2] + "AA"]
            for credential in secrets:
                for model in ("chat", "down"):
                    httpx.post(base + "/v1/chat/completions", json={**CHAT, "model": model},
                               headers={"Authorization": f"Bearer {credential}"}, timeout=10)
                httpx.get(base + "/admin/keys", headers={"Authorization": f"Bearer {credential}"})
                httpx.post(base + "/oauth/token", data={
                    "grant_type": EXCHANGE, "subject_token": credential, "actor_token": "b",
                    "actor_token_type": AGENT})
        finally:
            process.terminate()
            process.wait(timeout=15)
    output = log_file.read_text()
    assert '"msg": "request"' in output or '"msg":"request"' in output  # it did log
    for secret in secrets:
        for part in {secret, secret[:24], secret.split(".")[-1]} - {""}:
            assert part not in output, f"a secret ({part[:6]}…) was logged"


def test_token_exchange_bodies_are_read_whole_and_bounded(secured: GatewayServer) -> None:
    key = secured.create_key("svc")
    form = (f"grant_type={EXCHANGE}&subject_token={key}&actor_token=a&actor_token_type={AGENT}"
            "&padding=" + "x" * 40_000).encode()

    def chunks(data: bytes):  # type: ignore[no-untyped-def]
        for i in range(0, len(data), 1000):
            yield data[i:i + 1000]

    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    whole = httpx.post(secured.base_url + "/oauth/token", content=chunks(form), headers=headers)
    assert whole.status_code == 200, whole.text
    too_big = httpx.post(secured.base_url + "/oauth/token", content=form + b"y" * 30_000,
                         headers=headers)
    assert_openai_error(too_big, 413)
