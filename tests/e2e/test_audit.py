"""The audit log through the running gateway: a record per request, durable before the client
has its answer (streams too), proofs an outsider can check with the public key alone,
redacted content, refusal to answer unrecorded, and the `ironhold audit` commands."""

from __future__ import annotations

import base64
import hashlib
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ironhold.audit.checkpoint import Checkpoint
from ironhold.audit.merkle import leaf_hash, verify_consistency, verify_inclusion
from ironhold.audit.store import StoredRecord
from tests.helpers import CHAT, assert_openai_error, post
from tests.servers import GatewayServer, SimulatorServer

IRONHOLD = [sys.executable, "-m", "ironhold"]


@pytest.fixture
def audited(make_gateway: Callable[..., GatewayServer],
            simulator: SimulatorServer) -> GatewayServer:
    return make_gateway([{"name": "chat", "deployments": [
        {"url": simulator.url, "model": "sim-upstream"}]}],
        limits={"prices": {"chat": {"input_per_million": 1.0, "output_per_million": 2.0}}})


def stored(gw: GatewayServer, request_id: str) -> list[StoredRecord]:
    """Read straight from the database, on another connection than the writer's."""
    assert gw.gateway.audit is not None
    rows: list[StoredRecord] = gw.gateway.audit.log.store.find(request_id)
    return rows


def admin_get(gw: GatewayServer, key: str, path: str, **params: Any) -> httpx.Response:
    return httpx.get(gw.base_url + path, params=params,
                     headers={"Authorization": f"Bearer {key}"}, timeout=10)


def public_key_of(gw: GatewayServer, admin: str) -> Ed25519PublicKey:
    listing = admin_get(gw, admin, "/admin/audit/checkpoints").json()
    return Ed25519PublicKey.from_public_bytes(base64.b64decode(listing["public_key"]))


def test_each_request_is_recorded_before_its_answer_and_proved(audited: GatewayServer) -> None:
    key_id, key = audited.gateway.keys.create("app", tenant="acme")
    admin = audited.create_key("auditor", admin=True)
    body = orjson.dumps({**CHAT, "max_tokens": 5})
    answer = post(audited, key, content=body, headers={"x-request-id": "req-plain-1",
                                                       "content-type": "application/json"})
    assert answer.status_code == 200
    # Already durable when the client has the answer: no waiting, no retries.
    [row] = stored(audited, "req-plain-1")
    record = orjson.loads(row.record)
    assert record["principal"]["id"] == key_id.id and record["principal"]["tenant"] == "acme"
    assert (record["action"], record["model"], record["group"]) == ("chat", "chat", "chat")
    assert record["deployment"] == "chat-0" and record["status"] == 200
    assert record["outcome"] == "ok" and record["seq"] == row.seq
    assert record["request_sha256"] == hashlib.sha256(body).hexdigest()
    assert record["response_sha256"] == hashlib.sha256(answer.content).hexdigest()
    usage = answer.json()["usage"]
    assert record["usage"] == {"prompt_tokens": usage["prompt_tokens"],
                               "completion_tokens": usage["completion_tokens"]}
    assert record["cost_micros"] == usage["prompt_tokens"] + 2 * usage["completion_tokens"]
    assert record["limits"] is None and record["latency_ms"] > 0
    assert "content" not in record  # content is off by default: digests only

    # The proof: checked with nothing but the public key.
    proved = admin_get(audited, admin, "/admin/audit/records/req-plain-1").json()["data"][0]
    checkpoint = Checkpoint.from_dict(proved["checkpoint"])
    assert checkpoint.verify(public_key_of(audited, admin))
    leaf = base64.b64decode(proved["leaf_hash"])
    assert leaf == leaf_hash(row.record.encode())
    proof = [base64.b64decode(p) for p in proved["inclusion_proof"]]
    assert verify_inclusion(leaf, proved["seq"], checkpoint.size, proof, checkpoint.root)
    assert not verify_inclusion(leaf_hash(b"{}"), proved["seq"], checkpoint.size, proof,
                                checkpoint.root)


def test_a_stream_is_recorded_before_the_client_sees_done(audited: GatewayServer) -> None:
    key = audited.create_key()
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    seen = b""
    with httpx.stream("POST", audited.v1 + "/chat/completions", json=body, timeout=10,
                      headers={"Authorization": f"Bearer {key}",
                               "x-request-id": "req-stream-1"}) as response:
        for chunk in response.iter_bytes():
            seen += chunk
            if b"data: [DONE]" in seen:
                # The stream is complete for the client: the record is durable already.
                [row] = stored(audited, "req-stream-1")
                break
    record = orjson.loads(row.record)
    assert record["stream"] is True and record["status"] == 200 and record["outcome"] == "ok"
    assert record["usage"]["completion_tokens"] > 0
    assert record["response_sha256"] == hashlib.sha256(seen).hexdigest()


def test_refusals_are_recorded_too(audited: GatewayServer) -> None:
    assert_openai_error(post(audited, "ih-not-a-real-key", CHAT,
                             headers={"x-request-id": "req-401"}), 401)
    key = audited.create_key(models=["other"])
    assert_openai_error(post(audited, key, CHAT, headers={"x-request-id": "req-403"}), 403)
    unauthenticated = orjson.loads(stored(audited, "req-401")[0].record)
    assert unauthenticated["principal"] is None
    assert (unauthenticated["status"], unauthenticated["outcome"]) == (None, "invalid_api_key")
    denied = orjson.loads(stored(audited, "req-403")[0].record)
    assert denied["principal"]["name"] == "test" and denied["deployment"] is None
    assert denied["outcome"] == "permission_denied"


def test_checkpoints_are_consistent_and_only_admins_read_the_log(
        audited: GatewayServer) -> None:
    key, admin = audited.create_key(), audited.create_key("auditor", admin=True)
    sizes = []
    with openai.OpenAI(base_url=audited.v1, api_key=key, max_retries=0) as client:
        for round_ in range(3):
            for n in range(round_ + 2):
                reply = client.chat.completions.create(  # type: ignore[call-overload]
                    **CHAT, extra_headers={"x-request-id": f"sdk-{round_}-{n}"})
                assert reply.choices[0].message.content
                assert stored(audited, f"sdk-{round_}-{n}")  # durable once answered
            log = audited.gateway.audit.log  # type: ignore[union-attr]
            sizes.append(audited.run(log.checkpoint).size)
    listing = admin_get(audited, admin, "/admin/audit/checkpoints").json()
    assert [c["size"] for c in listing["data"]] == sizes[::-1]
    answer = admin_get(audited, admin, "/admin/audit/consistency",
                       first=sizes[0], second=sizes[2]).json()
    first, second = (Checkpoint.from_dict(answer[k]) for k in ("first", "second"))
    proof = [base64.b64decode(p) for p in answer["proof"]]
    assert verify_consistency(first.size, second.size, first.root, second.root, proof)
    assert not verify_consistency(first.size, second.size, second.root, second.root, proof)
    for path in ("/admin/audit/checkpoints", "/admin/audit/leaves/0"):
        assert_openai_error(admin_get(audited, key, path), 403)
    assert_openai_error(admin_get(audited, admin, "/admin/audit/consistency", first=1,
                                  second=999), 404)
    assert_openai_error(admin_get(audited, admin, "/admin/audit/consistency", first="x",
                                  second=2), 400)
    assert_openai_error(admin_get(audited, admin, "/admin/audit/records/nope"), 404)


def test_content_is_kept_only_on_request_and_then_redacted(
        make_gateway: Callable[..., GatewayServer], simulator: SimulatorServer) -> None:
    gw = make_gateway([{"name": "chat", "deployments": [{"url": simulator.url}]}],
                      audit={"content": True})
    secret = "sk-" + "A1b2C3d4" * 4
    message = f"mail jane.doe@example.com, key {secret}, card 4111 1111 1111 1111"
    body = {"model": "chat", "messages": [{"role": "user", "content": message}]}
    assert post(gw, gw.create_key(), body, headers={"x-request-id": "req-c"}).status_code == 200
    row = stored(gw, "req-c")[0]
    content = orjson.loads(row.record)["content"]
    text = content["request"]["messages"][0]["content"]
    assert "[REDACTED:email]" in text and "[REDACTED:api_key]" in text
    assert "[REDACTED:payment_card]" in text
    for leaked in ("jane.doe", secret, "4111 1111"):
        assert leaked not in row.record
    assert content["response"]["object"] == "chat.completion"


@pytest.mark.parametrize("on_error", ["closed", "open"])
def test_an_answer_is_not_given_unrecorded(make_gateway: Callable[..., GatewayServer],
                                           simulator: SimulatorServer, on_error: str) -> None:
    gw = make_gateway([{"name": "chat", "deployments": [{"url": simulator.url}]}],
                      audit={"on_store_error": on_error})
    key = gw.create_key()
    assert post(gw, key, CHAT).status_code == 200
    assert gw.gateway.audit is not None
    with gw.gateway.audit.log.store.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE ironhold_audit_records")
    answer = post(gw, key, CHAT)
    if on_error == "closed":
        error = assert_openai_error(answer, 503)
        assert error["code"] == "audit_unavailable"
    else:
        assert answer.status_code == 200


def test_the_audit_commands_verify_export_and_catch_tampering(
        audited: GatewayServer, tmp_path: Path) -> None:
    key = audited.create_key()
    for i in range(6):
        assert post(audited, key, CHAT, headers={"x-request-id": f"cli-{i}"}).status_code == 200
    audited.run(audited.gateway.audit.log.checkpoint)  # type: ignore[union-attr]
    config = tmp_path / "ironhold.yaml"

    ok = subprocess.run([*IRONHOLD, "audit", "verify", "-c", str(config)],
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("ok: 6 records") and "1 signed checkpoints" in ok.stdout

    saved = tmp_path / "anchor.json"
    made = subprocess.run([*IRONHOLD, "audit", "checkpoint", "-c", str(config), "-o",
                           str(saved)], capture_output=True, text=True, timeout=60)
    assert made.returncode == 0, made.stderr
    assert Checkpoint.from_dict(orjson.loads(saved.read_bytes())).size == 6

    export = subprocess.run([*IRONHOLD, "audit", "export", "-c", str(config)],
                            capture_output=True, timeout=60)
    lines = [orjson.loads(line) for line in export.stdout.splitlines()]
    assert [line["seq"] for line in lines] == list(range(6))
    assert lines[2]["record"]["request_id"] == "cli-2"
    exact = orjson.dumps(lines[2]["record"], option=orjson.OPT_SORT_KEYS)
    assert base64.b64decode(lines[2]["leaf_hash"]) == leaf_hash(exact)

    with sqlite3.connect(tmp_path / "state" / "ironhold.db") as db:
        db.execute("UPDATE ironhold_audit_records SET record = replace(record, "
                   "'\"status\":200', '\"status\":201') WHERE seq = 4")
    bad = subprocess.run([*IRONHOLD, "audit", "verify", "-c", str(config), "--checkpoint",
                          str(saved), "--json"], capture_output=True, timeout=60)
    assert bad.returncode == 1
    report = orjson.loads(bad.stdout)
    assert report["ok"] is False and report["problem"]["seq"] == 4
    assert report["problem"]["request_id"] == "cli-4"

    broken_anchor = tmp_path / "broken.json"
    broken_anchor.write_text("{}")
    refused = subprocess.run([*IRONHOLD, "audit", "verify", "-c", str(config),
                              "--checkpoint", str(broken_anchor)],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "is not a checkpoint" in refused.stderr


def test_changes_to_who_may_do_what_are_recorded(audited: GatewayServer) -> None:
    admin = audited.create_key("root", admin=True)
    headers = {"Authorization": f"Bearer {admin}", "x-request-id": "evt-create"}
    created = httpx.post(audited.base_url + "/admin/keys", json={"name": "svc"},
                         headers=headers, timeout=10).json()
    exchange = httpx.post(audited.base_url + "/oauth/token", timeout=10, data={
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "subject_token": created["key"], "actor_token": "planner",
        "actor_token_type": "urn:ironhold:params:oauth:token-type:agent"},
        headers={"x-request-id": "evt-delegate"})
    assert exchange.status_code == 200, exchange.text
    revoked = httpx.delete(audited.base_url + f"/admin/keys/{created['id']}", timeout=10,
                           headers={**headers, "x-request-id": "evt-revoke"})
    assert revoked.status_code == 200
    made = orjson.loads(stored(audited, "evt-create")[0].record)
    assert (made["kind"], made["action"]) == ("event", "create_key")
    assert made["target"]["id"] == created["id"] and made["principal"]["name"] == "root"
    delegated = orjson.loads(stored(audited, "evt-delegate")[0].record)
    assert delegated["action"] == "delegate"
    assert delegated["target"]["chain"] == [created["id"], "agent:planner"]
    assert delegated["target"]["passport"] == exchange.json()["passport_id"]
    gone = orjson.loads(stored(audited, "evt-revoke")[0].record)
    assert gone["action"] == "revoke_key" and gone["target"]["revoked"] == [created["id"]]
    everything = " ".join(r.record for r in audited.gateway.audit.log.store.records())  # type: ignore[union-attr]
    for secret in (created["key"], exchange.json()["access_token"], admin):
        assert secret not in everything
