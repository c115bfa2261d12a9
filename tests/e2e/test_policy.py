"""Policy through the running gateway, and `ironhold policy test` as a command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import openai
import pytest

from tests.helpers import CHAT, assert_openai_error, post
from tests.servers import GatewayServer, SimulatorServer

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "policies"
IRONHOLD = [sys.executable, "-m", "ironhold"]


@pytest.fixture
def governed(make_gateway: Callable[..., GatewayServer],
             simulator: SimulatorServer) -> GatewayServer:
    models = [{"name": name, "deployments": [{"url": simulator.url}]}
              for name in ("chat", "embed", "large")]
    return make_gateway(models, policy={"files": [str(EXAMPLES)]})


def test_policy_decides_every_call(governed: GatewayServer) -> None:
    acme = governed.gateway.keys.create("svc", tenant="acme")[1]
    research = governed.gateway.keys.create("lab", tenant="research")[1]
    loose = governed.create_key("no-tenant")
    with openai.OpenAI(base_url=governed.v1, api_key=acme, max_retries=0) as client:
        assert client.chat.completions.create(**CHAT).choices  # type: ignore[call-overload]
        with pytest.raises(openai.PermissionDeniedError) as err:
            client.chat.completions.create(**{**CHAT, "model": "large"})  # type: ignore[call-overload]
        assert err.value.code == "policy_denied"
        # Policy ids are for admins: a normal caller is told no more than "policy".
        assert "research-large-model" not in str(err.value.body)
        assert [m.id for m in client.models.list()] == ["chat", "embed"]
    big_prompt = {**CHAT, "model": "large",
                  "messages": [{"role": "user", "content": "x" * 40_000}]}
    assert post(governed, research, {**CHAT, "model": "large"}).status_code == 200
    assert_openai_error(post(governed, research, big_prompt), 403)
    assert_openai_error(post(governed, loose, CHAT), 403)


def test_admins_see_the_deciding_policies_and_admin_routes_obey_policy(
        governed: GatewayServer) -> None:
    ops = governed.create_key("ops", admin=True)
    error = assert_openai_error(post(governed, ops, CHAT), 403)
    assert "default deny" in str(error["message"])
    assert httpx.get(governed.base_url + "/admin/keys",
                     headers={"Authorization": f"Bearer {ops}"}).status_code == 200
    # Two hops away from the admin key, an agent given the admin scope (it is never inherited
    # unasked) keeps it, but policy forbids it.
    form = {"grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "actor_token_type": "urn:ironhold:params:oauth:token-type:agent", "scope": "admin"}
    one = httpx.post(governed.base_url + "/oauth/token", data={
        **form, "subject_token": ops, "actor_token": "a"}).json()["access_token"]
    two = httpx.post(governed.base_url + "/oauth/token", data={
        **form, "subject_token": one, "actor_token": "b"}).json()["access_token"]
    assert httpx.get(governed.base_url + "/admin/keys",
                     headers={"Authorization": f"Bearer {one}"}).status_code == 200
    denied = assert_openai_error(httpx.get(governed.base_url + "/admin/keys",
                                           headers={"Authorization": f"Bearer {two}"}), 403)
    assert "deep-agents-never-administer" in str(denied["message"])


def test_policy_test_command(tmp_path: Path) -> None:
    ok = subprocess.run([*IRONHOLD, "policy", "test", str(EXAMPLES / "cases.yaml"), "-p",
                         str(EXAMPLES), "--json"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    report = json.loads(ok.stdout)
    assert report["passed"] == 11 and report["failed"] == 0
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("""
cases:
  - name: claims a public caller may chat
    principal: {id: key_x, tenant: acme}
    action: chat
    resource: {model: chat}
    context: {client_ip: 8.8.8.8}
    expect: allow
  - name: right decision, wrong policy named
    principal: {id: key_x, tenant: acme}
    action: chat
    resource: {model: chat}
    expect: allow
    policies: [admins-administer]
""")
    failed = subprocess.run([*IRONHOLD, "policy", "test", str(wrong), "-p", str(EXAMPLES)],
                            capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"})
    assert failed.returncode == 1 and "0 passed, 2 failed" in failed.stdout
    assert "private-networks-only" in failed.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("cases:\n  - name: x\n    principal: {id: k}\n    action: fly\n"
                   "    expect: allow\n")
    broken = subprocess.run([*IRONHOLD, "policy", "test", str(bad), "-p", str(EXAMPLES)],
                            capture_output=True, text=True)
    assert broken.returncode == 2 and "unknown action 'fly'" in broken.stderr
    nowhere = subprocess.run([*IRONHOLD, "policy", "test", str(bad)], capture_output=True,
                             text=True)
    assert nowhere.returncode == 1 and "--policies" in nowhere.stderr
